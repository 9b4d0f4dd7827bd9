// RFC 4648 base32 without padding, lowercase on output, either case on input.
// Used for the text form of publisher keys (52 characters for 32 bytes).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/result.hpp"

namespace outlast::crypto {

std::string base32_encode(std::span<std::uint8_t const> bytes);

// Errors: invalid_argument when a character is outside the alphabet, padding is present, the
// length cannot come from whole bytes, or the unused trailing bits are not zero (so that every
// byte string has exactly one text form).
result<std::vector<std::uint8_t>> base32_decode(std::string_view text);

std::string to_hex(std::span<std::uint8_t const> bytes);
result<std::vector<std::uint8_t>> from_hex(std::string_view text);

}  // namespace outlast::crypto
