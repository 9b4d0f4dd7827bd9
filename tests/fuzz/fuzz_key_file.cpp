// Secret key files: someone may hand you a damaged or crafted one. Without a passphrase, so an
// encrypted file is refused before any key derivation (whose cost the file's bounded limits set).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "crypto/key_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  (void)outlast::crypto::decode_key_file({reinterpret_cast<char const*>(data), size}, std::nullopt);
  return 0;
}
