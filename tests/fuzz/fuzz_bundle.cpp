// Bundle heads (node/bundle.hpp): a bundle may come from anyone on a USB stick. The magic line,
// the manifest length and the manifest, up to the point where file bytes begin.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "node/bundle.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::size_t offset = 0;
  auto m = outlast::node::read_bundle_head({reinterpret_cast<char const*>(data), size}, offset);
  if (!m) return 0;
  if (offset > size) __builtin_trap();
  auto again = outlast::node::decode_bundle_manifest(outlast::node::encode_bundle_manifest(*m));
  if (!again || again->records.size() != m->records.size() || again->torrent != m->torrent) __builtin_trap();
  return 0;
}
