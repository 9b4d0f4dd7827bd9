#include "crypto/base32.hpp"

#include <sodium.h>

namespace outlast::crypto {

namespace {
constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

int decode_char(char c) {
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= '2' && c <= '7') return c - '2' + 26;
  return -1;
}
}  // namespace

std::string base32_encode(std::span<std::uint8_t const> bytes) {
  std::string out;
  out.reserve((bytes.size() * 8 + 4) / 5);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (std::uint8_t b : bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out.push_back(alphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  if (bits > 0) out.push_back(alphabet[(buffer << (5 - bits)) & 31]);
  return out;
}

result<std::vector<std::uint8_t>> base32_decode(std::string_view text) {
  // Lengths mod 8 of 1, 3 and 6 cannot be produced by whole bytes.
  switch (text.size() % 8) {
    case 1: case 3: case 6:
      return make_error(errc::invalid_argument,
                        "base32 text of " + std::to_string(text.size()) + " characters cannot encode whole bytes");
    default: break;
  }
  std::vector<std::uint8_t> out;
  out.reserve(text.size() * 5 / 8);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    int v = decode_char(text[i]);
    if (v < 0) {
      std::string shown = text[i] == '=' ? "padding '='" : "character '" + std::string(1, text[i]) + "'";
      return make_error(errc::invalid_argument, "invalid base32: " + shown + " at position " +
                                                    std::to_string(i + 1) + " (allowed: a-z, 2-7)");
    }
    buffer = (buffer << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<std::uint8_t>(buffer >> (bits - 8)));
      bits -= 8;
    }
  }
  if (bits > 0 && (buffer & ((1u << bits) - 1)) != 0)
    return make_error(errc::invalid_argument, "invalid base32: the last character has non-zero unused bits");
  return out;
}

std::string to_hex(std::span<std::uint8_t const> bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes.data(), bytes.size());
  out.pop_back();
  return out;
}

result<std::vector<std::uint8_t>> from_hex(std::string_view text) {
  if (text.size() % 2 != 0) return make_error(errc::invalid_argument, "hex text has an odd length");
  if (text.empty()) return std::vector<std::uint8_t>{};  // (libsodium must not see a null buffer)
  std::vector<std::uint8_t> out(text.size() / 2);
  std::size_t len = 0;
  char const* end = nullptr;
  if (sodium_hex2bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end) != 0 ||
      len != out.size())
    return make_error(errc::invalid_argument, "invalid hex text");
  return out;
}

}  // namespace outlast::crypto
