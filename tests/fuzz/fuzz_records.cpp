// Signed records as they arrive from the DHT, peers and bundles: decode, verify, and the typed
// contents (pointer, notice) decoded from any bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "crypto/records.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::string_view in(reinterpret_cast<char const*>(data), size);
  if (auto item = outlast::crypto::decode_item(in)) {
    (void)outlast::crypto::verify_item(*item);
    (void)outlast::crypto::decode_pointer(item->value);
    (void)outlast::crypto::decode_notice(item->value);
    // What decodes must encode back to something that decodes the same.
    auto again = outlast::crypto::decode_item(outlast::crypto::encode_item(*item));
    if (!again || !(*again == *item)) __builtin_trap();
  }
  (void)outlast::crypto::decode_pointer(in);
  (void)outlast::crypto::decode_notice(in);
  return 0;
}
