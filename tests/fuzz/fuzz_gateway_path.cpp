// Request targets from any web page or program that reaches the gateway: the one
// percent-decoding and checking of a path. Whatever it accepts must stay inside the site.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "net/gateway.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  auto path = outlast::net::clean_request_path({reinterpret_cast<char const*>(data), size});
  if (!path) return 0;
  std::string_view p(*path);
  if (p.find('\0') != std::string_view::npos) __builtin_trap();
  if (p == ".." || p.rfind("../", 0) == 0 || p.find("/../") != std::string_view::npos ||
      (p.size() >= 3 && p.substr(p.size() - 3) == "/.."))
    __builtin_trap();
  if (!p.empty() && p.front() == '/') __builtin_trap();
  return 0;
}
