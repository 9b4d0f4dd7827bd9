// Publisher keys: Ed25519 key pairs (libsodium) and the public key's text form
// (52-character lowercase RFC 4648 base32, no padding). Value types; any thread.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "crypto/result.hpp"

namespace outlast::crypto {

// Must succeed before any other crypto call; cheap to call again. Throws on failure (start-up).
void init();

struct public_key {
  static constexpr std::size_t size = 32;
  std::array<std::uint8_t, size> bytes{};

  std::string to_text() const;  // 52 lowercase base32 characters
  auto operator<=>(public_key const&) const = default;
};

struct signature {
  static constexpr std::size_t size = 64;
  std::array<std::uint8_t, size> bytes{};
  auto operator<=>(signature const&) const = default;
};

// Errors: invalid_argument with a message that says what is wrong (length, alphabet, bits).
result<public_key> parse_public_key(std::string_view text);

// An Ed25519 key pair. Holds the 32-byte seed in memory locked against swapping where the
// system allows and wiped on destruction. Move-only.
class key_pair {
 public:
  static constexpr std::size_t seed_size = 32;

  static key_pair generate();
  static key_pair from_seed(std::span<std::uint8_t const, seed_size> seed);

  key_pair(key_pair&&) noexcept;
  key_pair& operator=(key_pair&&) noexcept;
  key_pair(key_pair const&) = delete;
  key_pair& operator=(key_pair const&) = delete;
  ~key_pair();

  public_key const& public_half() const { return m_public; }
  std::span<std::uint8_t const, seed_size> seed() const { return std::span<std::uint8_t const, seed_size>(m_secret.data(), seed_size); }
  signature sign(std::span<std::uint8_t const> message) const;

 private:
  key_pair() = default;
  public_key m_public;
  std::array<std::uint8_t, 64> m_secret{};  // libsodium layout: seed || public key
};

bool verify(public_key const& key, std::span<std::uint8_t const> message, signature const& sig);

inline std::span<std::uint8_t const> as_bytes(std::string_view s) {
  return {reinterpret_cast<std::uint8_t const*>(s.data()), s.size()};
}

}  // namespace outlast::crypto
