// Torrent metadata as a peer could send it: every check made before a byte is written.
#include <cstddef>
#include <cstdint>
#include <string>

#include "net/torrents.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  if (size > (1 << 20)) return 0;
  (void)outlast::net::check_torrent(std::string(reinterpret_cast<char const*>(data), size), std::int64_t(1) << 40);
  return 0;
}
