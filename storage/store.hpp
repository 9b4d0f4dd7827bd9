// outlast::storage::store: the node's embedded database (LMDB). Holds everything small and
// important: publishers' public keys, sites, versions, every signed record received, refused
// records kept as evidence, libtorrent resume data and session state, settings.
//
// One store per process and home. Thread safety: any thread may call it; write transactions are
// serialized by LMDB, and the store takes care of growing the map when it fills (MDB_MAP_FULL),
// which re-runs the write. Transactions are short: never keep one across an asynchronous wait.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/records.hpp"
#include "crypto/result.hpp"

namespace outlast::storage {

inline constexpr int schema_version = 1;

enum class site_role { published, followed };
std::string_view to_string(site_role r);

struct site_record {
  crypto::public_key key;
  std::string name;
  site_role role = site_role::followed;
  std::int64_t version = 0;  // newest complete version held (0: none yet)
  std::int64_t added = 0;    // Unix seconds
  bool operator==(site_record const&) const = default;
};

struct version_record {
  crypto::public_key key;
  std::string site;
  std::int64_t seq = 0;
  std::array<std::uint8_t, 32> ih2{};
  std::int64_t size = 0;
  std::int64_t time = 0;
  bool complete = false;
  bool operator==(version_record const&) const = default;
};

// What put_record did with a record.
enum class record_outcome {
  stored,     // newer than what was held (or the first): it is now the latest
  duplicate,  // exactly the record already held
  stale,      // validly signed but older than what is held: a replay or rollback, kept as evidence
  conflict,   // same seq, different content: a fork by the key holder, kept as evidence
};
std::string_view to_string(record_outcome o);

struct refusal {
  crypto::signed_item item;
  std::string reason;
  std::int64_t time = 0;
};

class txn;

class store {
 public:
  struct options {
    std::size_t initial_map_size = std::size_t(64) << 20;
    std::size_t max_map_size = std::size_t(64) << 30;
  };

  // Opens or creates the store in `dir` (created if missing) and runs schema migrations.
  // Errors: io_error (permissions, disk), corrupt (not an LMDB file, damaged), invalid_argument
  // (written by a newer schema).
  static result<std::unique_ptr<store>> open(std::filesystem::path const& dir, options opts);
  static result<std::unique_ptr<store>> open(std::filesystem::path const& dir) { return open(dir, options{}); }
  ~store();

  // Runs `fn` in one write transaction and commits it if `fn` succeeds. `fn` may run more than
  // once (after the map grew), so it must have no effects outside the transaction.
  status write(std::function<status(txn&)> const& fn);
  // Runs `fn` in a read-only transaction; write operations on it fail.
  status read(std::function<status(txn&)> const& fn) const;

  std::size_t map_size() const;
  int schema() const;

  // One-operation conveniences.
  status put_setting(std::string_view name, std::string_view value);
  result<std::optional<std::string>> get_setting(std::string_view name) const;
  // Verifies the record and applies the sequence rule; see record_outcome.
  // Errors: invalid_argument / bad_signature (the record is refused and not kept), io_error.
  result<record_outcome> put_record(crypto::signed_item const& item);
  result<std::optional<crypto::signed_item>> get_record(crypto::public_key const& key, std::string_view salt) const;

  struct impl;

 private:
  explicit store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> m_impl;
};

// Typed access inside one transaction. Only valid inside the callback that received it.
class txn {
 public:
  status put_setting(std::string_view name, std::string_view value);
  result<std::optional<std::string>> get_setting(std::string_view name);
  status erase_setting(std::string_view name);

  status put_key(std::string_view name, crypto::public_key const& key);
  result<std::optional<crypto::public_key>> get_key(std::string_view name);
  result<std::vector<std::pair<std::string, crypto::public_key>>> list_keys();

  status put_site(site_record const& s);
  result<std::optional<site_record>> get_site(crypto::public_key const& key, std::string_view name);
  result<std::vector<site_record>> list_sites();
  status erase_site(crypto::public_key const& key, std::string_view name);

  status put_version(version_record const& v);
  status erase_version(crypto::public_key const& key, std::string_view site, std::int64_t seq);
  result<std::vector<version_record>> list_versions(crypto::public_key const& key, std::string_view site);

  result<record_outcome> put_record(crypto::signed_item const& item, std::int64_t now);
  result<std::optional<crypto::signed_item>> get_record(crypto::public_key const& key, std::string_view salt);
  result<std::vector<crypto::signed_item>> list_records(crypto::public_key const& key);
  result<std::vector<refusal>> list_refusals();

  // Notice history: every accepted notice (verified by put_record first), the newest
  // `max_notices_per_key` per publisher. Oldest first.
  inline static constexpr std::size_t max_notices_per_key = 100;
  status put_notice(crypto::signed_item const& item);
  result<std::vector<crypto::signed_item>> list_notices(std::optional<crypto::public_key> const& key);
  result<std::size_t> count_refusals();

  // Opaque blobs: libtorrent resume data (by info-hash) and session state (by name).
  status put_blob(std::string_view space, std::string_view id, std::string_view data);
  result<std::optional<std::string>> get_blob(std::string_view space, std::string_view id);
  status erase_blob(std::string_view space, std::string_view id);

  struct impl;
  explicit txn(impl& i) : m_impl(i) {}

 private:
  friend class store;
  impl& m_impl;
};

}  // namespace outlast::storage
