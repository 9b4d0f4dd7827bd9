#include "crypto/keys.hpp"

#include <sodium.h>

#include <stdexcept>
#include <utility>

#include "crypto/base32.hpp"

namespace outlast::crypto {

void init() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

std::string public_key::to_text() const { return base32_encode(bytes); }

result<public_key> parse_public_key(std::string_view text) {
  constexpr std::size_t text_size = 52;
  if (text.size() != text_size)
    return make_error(errc::invalid_argument, "a publisher key is " + std::to_string(text_size) +
                                                  " base32 characters, got " + std::to_string(text.size()));
  auto raw = base32_decode(text);
  if (!raw) return make_error(errc::invalid_argument, "not a publisher key: " + raw.err().message);
  public_key k;
  std::copy(raw->begin(), raw->end(), k.bytes.begin());
  return k;
}

key_pair key_pair::generate() {
  init();
  key_pair kp;
  crypto_sign_keypair(kp.m_public.bytes.data(), kp.m_secret.data());
  return kp;
}

key_pair key_pair::from_seed(std::span<std::uint8_t const, seed_size> seed) {
  init();
  key_pair kp;
  crypto_sign_seed_keypair(kp.m_public.bytes.data(), kp.m_secret.data(), seed.data());
  return kp;
}

key_pair::key_pair(key_pair&& other) noexcept : m_public(other.m_public), m_secret(other.m_secret) {
  sodium_memzero(other.m_secret.data(), other.m_secret.size());
}

key_pair& key_pair::operator=(key_pair&& other) noexcept {
  if (this != &other) {
    m_public = other.m_public;
    m_secret = other.m_secret;
    sodium_memzero(other.m_secret.data(), other.m_secret.size());
  }
  return *this;
}

key_pair::~key_pair() { sodium_memzero(m_secret.data(), m_secret.size()); }

signature key_pair::sign(std::span<std::uint8_t const> message) const {
  signature sig;
  crypto_sign_detached(sig.bytes.data(), nullptr, message.data(), message.size(), m_secret.data());
  return sig;
}

bool verify(public_key const& key, std::span<std::uint8_t const> message, signature const& sig) {
  return crypto_sign_verify_detached(sig.bytes.data(), message.data(), message.size(), key.bytes.data()) == 0;
}

}  // namespace outlast::crypto
