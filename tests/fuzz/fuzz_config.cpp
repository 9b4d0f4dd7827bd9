// The node's config file, outlast.conf: any content gives a config or a clear error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "node/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  static auto const home = [] {
    auto dir = std::filesystem::temp_directory_path() / ("outlast-fuzz-config-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    return dir;
  }();
  {
    std::ofstream out(home / "outlast.conf", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<char const*>(data), static_cast<std::streamsize>(size));
  }
  boost::program_options::variables_map none;
  (void)outlast::node::load_node_config(home, none);
  return 0;
}
