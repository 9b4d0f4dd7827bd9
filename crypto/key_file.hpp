// Secret key files: a small versioned text format holding an Ed25519 seed, in clear or
// encrypted with a passphrase (Argon2id key derivation + XChaCha20-Poly1305). Files are written
// atomically with mode 0600. Pure functions; any thread.
//
//   outlast-secret-key 1
//   public <52-char key text>
//   encryption none | argon2id-xchacha20poly1305
//   kdf-salt <32 hex>          (encrypted only)
//   kdf-ops <n>                (encrypted only)
//   kdf-mem <bytes>            (encrypted only)
//   nonce <48 hex>             (encrypted only)
//   secret <64 hex seed | 96 hex ciphertext+tag>
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/keys.hpp"

namespace outlast::crypto {

struct kdf_limits {
  std::uint64_t ops;
  std::size_t mem;
  static kdf_limits moderate();     // default for keys: ~1 s and 256 MiB on a laptop
  static kdf_limits interactive();  // for tests and weak machines
};

struct key_file_info {
  public_key key;
  bool encrypted = false;
};

std::string encode_key_file(key_pair const& kp, std::optional<std::string_view> passphrase,
                            kdf_limits limits = kdf_limits::moderate());

// Errors: corrupt (not a key file, unknown version, damaged field, seed does not match the
// public key, ciphertext fails authentication without a passphrase mismatch being possible),
// invalid_argument (KDF limits out of bounds).
result<key_file_info> inspect_key_file(std::string_view text);

// Errors: as inspect_key_file, plus wrong_passphrase (encrypted and the passphrase is missing or
// does not open it).
result<key_pair> decode_key_file(std::string_view text, std::optional<std::string_view> passphrase);

// Writes through a temporary file, fsync and rename: a crash leaves the old file or the new one.
// Errors: io_error, already_exists (when !overwrite and the file exists).
status write_private_file(std::filesystem::path const& path, std::string_view contents, bool overwrite);

// Reads a small file (at most max_size bytes). Errors: not_found, io_error, invalid_argument (too big).
result<std::string> read_small_file(std::filesystem::path const& path, std::size_t max_size = 64 * 1024);

}  // namespace outlast::crypto
