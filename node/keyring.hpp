// The publisher keys of a home: secret key files in <home>/keys/NAME.key (mode 0600). The files
// are the source of truth; the node records their public halves in the store. Needs no running
// node. Any thread, but not concurrently on the same name.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/key_file.hpp"

namespace outlast::node {

struct key_entry {
  std::string name;
  crypto::public_key key;
  bool encrypted = false;
};

class keyring {
 public:
  explicit keyring(std::filesystem::path home) : m_dir(std::move(home) / "keys") {}

  // Key names: 1-64 of [A-Za-z0-9_.-], not starting with '.'.
  static status check_name(std::string_view name);

  // Errors: invalid_argument (name), already_exists, io_error.
  result<key_entry> create(std::string_view name, std::optional<std::string_view> passphrase,
                           crypto::kdf_limits limits = crypto::kdf_limits::moderate());
  // Errors: not_found, corrupt, io_error.
  result<key_entry> find(std::string_view name) const;
  // Errors: io_error; damaged files are reported in `problems` and skipped.
  result<std::vector<key_entry>> list(std::vector<std::string>* problems = nullptr) const;
  // Decrypts a key for signing. Errors: not_found, corrupt, wrong_passphrase.
  result<crypto::key_pair> unlock(std::string_view name, std::optional<std::string_view> passphrase) const;
  // Copies the key file as it is (encrypted stays encrypted) to `dest`, mode 0600.
  // Errors: not_found, already_exists, io_error.
  status export_to(std::string_view name, std::filesystem::path const& dest) const;
  // Checks `source` is a well-formed key file, then adds it under `name`.
  // Errors: invalid_argument, corrupt, already_exists (the name, or the same key under another name), io_error.
  result<key_entry> import_from(std::filesystem::path const& source, std::string_view name);

  std::filesystem::path path_of(std::string_view name) const { return m_dir / (std::string(name) + ".key"); }

 private:
  status ensure_dir() const;
  std::filesystem::path m_dir;
};

}  // namespace outlast::node
