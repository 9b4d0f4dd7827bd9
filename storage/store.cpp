#include "storage/store.hpp"

#include <lmdb.h>

#include <cerrno>

#include <array>
#include <cstring>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>

#include "crypto/base32.hpp"

namespace outlast::storage {

using json = nlohmann::json;

namespace {

// Raised inside a transaction when LMDB reports MDB_MAP_FULL; write() grows the map and retries.
constexpr std::string_view map_full_marker = "\x01map-full";

struct dbs {
  MDB_dbi meta, settings, keys, sites, versions, records, refusals, blobs, notices;
};

error lmdb_error(int rc, std::string_view what) {
  if (rc == MDB_MAP_FULL) return make_error(errc::io_error, std::string(map_full_marker));
  errc code = errc::io_error;
  if (rc == MDB_CORRUPTED || rc == MDB_INVALID || rc == MDB_PAGE_NOTFOUND || rc == MDB_VERSION_MISMATCH)
    code = errc::corrupt;
  return make_error(code, std::string(what) + ": " + mdb_strerror(rc));
}

bool is_map_full(error const& e) { return e.message == map_full_marker; }

MDB_val val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view view(MDB_val const& v) { return {static_cast<char const*>(v.mv_data), v.mv_size}; }

std::string key_bytes(crypto::public_key const& k) { return std::string(k.bytes.begin(), k.bytes.end()); }

std::string site_key(crypto::public_key const& k, std::string_view name) {
  return key_bytes(k) + std::string(name);
}

std::string version_prefix(crypto::public_key const& k, std::string_view site) {
  return key_bytes(k) + std::string(site) + '\0';
}

std::string big_endian(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
  return out;
}

std::string hex(std::span<std::uint8_t const> b) { return crypto::to_hex(b); }

template <std::size_t N>
bool unhex(std::string const& text, std::array<std::uint8_t, N>& out) {
  auto raw = crypto::from_hex(text);
  if (!raw || raw->size() != N) return false;
  std::copy(raw->begin(), raw->end(), out.begin());
  return true;
}

error corrupt_value(std::string_view what) {
  return make_error(errc::corrupt, "store: damaged " + std::string(what) + " entry");
}

result<site_record> decode_site(std::string_view data) {
  auto j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return corrupt_value("site");
  try {
    site_record s;
    auto key = crypto::parse_public_key(j.at("key").get<std::string>());
    if (!key) return corrupt_value("site");
    s.key = *key;
    s.name = j.at("name").get<std::string>();
    s.role = j.at("role").get<std::string>() == "published" ? site_role::published : site_role::followed;
    s.version = j.at("version").get<std::int64_t>();
    s.added = j.at("added").get<std::int64_t>();
    return s;
  } catch (json::exception const&) {
    return corrupt_value("site");
  }
}

result<version_record> decode_version(std::string_view data) {
  auto j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return corrupt_value("version");
  try {
    version_record v;
    auto key = crypto::parse_public_key(j.at("key").get<std::string>());
    if (!key || !unhex(j.at("ih2").get<std::string>(), v.ih2)) return corrupt_value("version");
    v.key = *key;
    v.site = j.at("site").get<std::string>();
    v.seq = j.at("seq").get<std::int64_t>();
    v.size = j.at("size").get<std::int64_t>();
    v.time = j.at("time").get<std::int64_t>();
    v.complete = j.at("complete").get<bool>();
    return v;
  } catch (json::exception const&) {
    return corrupt_value("version");
  }
}

// Migrations from schema N to N+1, in order. Schema 1 is the first; add a function here (and
// bump schema_version) for every change of layout or meaning.
using migration = status (*)(txn&);
constexpr std::array<migration, schema_version - 1> migrations{};

}  // namespace

std::string_view to_string(site_role r) { return r == site_role::published ? "published" : "followed"; }

std::string_view to_string(record_outcome o) {
  switch (o) {
    case record_outcome::stored: return "stored";
    case record_outcome::duplicate: return "duplicate";
    case record_outcome::stale: return "stale";
    case record_outcome::conflict: return "conflict";
  }
  return "?";
}

struct store::impl {
  MDB_env* env = nullptr;
  dbs db{};
  options opts;
  int schema = 0;
  // LMDB allows mdb_env_set_mapsize only while this process has no transaction open: readers
  // and writers hold the lock shared, growing the map holds it exclusively.
  mutable std::shared_mutex resize_lock;

  ~impl() {
    if (env) mdb_env_close(env);
  }

  status grow() {
    std::unique_lock lock(resize_lock);
    MDB_envinfo info;
    mdb_env_info(env, &info);
    std::size_t next = info.me_mapsize * 2;
    if (next > opts.max_map_size)
      return make_error(errc::io_error, "store is full: it reached its size limit of " +
                                            std::to_string(opts.max_map_size >> 20) + " MiB");
    int rc = mdb_env_set_mapsize(env, next);
    if (rc != 0) return lmdb_error(rc, "cannot grow the store");
    return {};
  }

  status run(std::function<status(txn&)> const& fn, bool write) {
    for (int attempt = 0;; ++attempt) {
      auto st = run_once(fn, write);
      if (st || !write || !is_map_full(st.err()) || attempt >= 16) {
        if (!st && is_map_full(st.err())) return make_error(errc::io_error, "store is full");
        return st;
      }
      if (auto g = grow(); !g) return g;
    }
  }

  status run_once(std::function<status(txn&)> const& fn, bool write);
};

struct txn::impl {
  MDB_txn* t;
  dbs const& db;
  bool writable;

  status require_write() const {
    if (!writable) return make_error(errc::internal, "write in a read-only transaction");
    return {};
  }
  status put(MDB_dbi dbi, std::string_view k, std::string_view v) {
    if (auto w = require_write(); !w) return w;
    MDB_val mk = val(k), mv = val(v);
    int rc = mdb_put(t, dbi, &mk, &mv, 0);
    if (rc != 0) return lmdb_error(rc, "store write");
    return {};
  }
  result<std::optional<std::string>> get(MDB_dbi dbi, std::string_view k) {
    MDB_val mk = val(k), mv{};
    int rc = mdb_get(t, dbi, &mk, &mv);
    if (rc == MDB_NOTFOUND) return std::optional<std::string>{};
    if (rc != 0) return lmdb_error(rc, "store read");
    return std::optional<std::string>(std::string(view(mv)));
  }
  status erase(MDB_dbi dbi, std::string_view k) {
    if (auto w = require_write(); !w) return w;
    MDB_val mk = val(k);
    int rc = mdb_del(t, dbi, &mk, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "store delete");
    return {};
  }
  // Calls fn(key, value) for every entry whose key starts with prefix.
  status scan(MDB_dbi dbi, std::string_view prefix, std::function<status(std::string_view, std::string_view)> const& fn) {
    MDB_cursor* c = nullptr;
    int rc = mdb_cursor_open(t, dbi, &c);
    if (rc != 0) return lmdb_error(rc, "store cursor");
    MDB_val mk = val(prefix), mv{};
    rc = mdb_cursor_get(c, &mk, &mv, prefix.empty() ? MDB_FIRST : MDB_SET_RANGE);
    status st;
    while (rc == 0) {
      auto k = view(mk);
      if (k.substr(0, prefix.size()) != prefix) break;
      st = fn(k, view(mv));
      if (!st) break;
      rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (!st) return st;
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "store scan");
    return {};
  }
};

status store::impl::run_once(std::function<status(txn&)> const& fn, bool write) {
  std::shared_lock lock(resize_lock);
  MDB_txn* t = nullptr;
  int rc = mdb_txn_begin(env, nullptr, write ? 0 : MDB_RDONLY, &t);
  if (rc == MDB_MAP_RESIZED) {
    // Another process grew the map; adopt its size (0 = use the size on disk).
    lock.unlock();
    {
      std::unique_lock ex(resize_lock);
      mdb_env_set_mapsize(env, 0);
    }
    lock.lock();
    rc = mdb_txn_begin(env, nullptr, write ? 0 : MDB_RDONLY, &t);
  }
  if (rc != 0) return lmdb_error(rc, "cannot begin a store transaction");
  txn::impl ti{t, db, write};
  txn tx(ti);
  auto st = fn(tx);
  if (!st || !write) {
    mdb_txn_abort(t);
    return st;
  }
  rc = mdb_txn_commit(t);
  if (rc == 0) return {};
  auto e = lmdb_error(rc, "cannot commit to the store");
  // A full disk shows as ENOSPC, or as EIO when a write comes up short: say which it is. Nothing
  // of this transaction was written; what was committed before is intact.
  char const* path = nullptr;
  std::error_code ec;
  if ((rc == ENOSPC || rc == EIO) && mdb_env_get_path(env, &path) == 0 && path) {
    auto space = std::filesystem::space(path, ec);
    if (!ec && space.available < (std::uintmax_t(1) << 20))
      e.message += " (the disk holding " + std::string(path) + " is full: " + std::to_string(space.available) +
                   " bytes free; nothing of this change was stored)";
  }
  return e;
}

result<std::unique_ptr<store>> store::open(std::filesystem::path const& dir, options opts) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(errc::io_error, "cannot create " + dir.string() + ": " + ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);

  auto p = std::make_unique<impl>();
  p->opts = opts;
  int rc = mdb_env_create(&p->env);
  if (rc != 0) return lmdb_error(rc, "cannot create the store environment");
  mdb_env_set_maxdbs(p->env, 16);
  // Keep the map size the file already has if it is bigger than the initial size.
  mdb_env_set_mapsize(p->env, opts.initial_map_size);
  rc = mdb_env_open(p->env, dir.c_str(), MDB_NOTLS, 0600);
  if (rc != 0) {
    auto e = lmdb_error(rc, "cannot open the store in " + dir.string());
    if (e.code == errc::corrupt) e.message += " (the store file is damaged; restore it from a backup or move it away)";
    return e;
  }

  MDB_txn* t = nullptr;
  rc = mdb_txn_begin(p->env, nullptr, 0, &t);
  if (rc != 0) return lmdb_error(rc, "cannot open the store");
  auto open_db = [&](char const* name, MDB_dbi& dbi) {
    if (rc == 0) rc = mdb_dbi_open(t, name, MDB_CREATE, &dbi);
  };
  open_db("meta", p->db.meta);
  open_db("settings", p->db.settings);
  open_db("keys", p->db.keys);
  open_db("sites", p->db.sites);
  open_db("versions", p->db.versions);
  open_db("records", p->db.records);
  open_db("refusals", p->db.refusals);
  open_db("blobs", p->db.blobs);
  open_db("notices", p->db.notices);
  if (rc == 0) rc = mdb_txn_commit(t);
  else mdb_txn_abort(t);
  if (rc != 0) return lmdb_error(rc, "cannot open the store's tables");

  auto s = std::unique_ptr<store>(new store(std::move(p)));
  auto& meta = s->m_impl->db.meta;
  int found = 0;
  auto st = s->write([&](txn& tx) -> status {
    auto v = tx.m_impl.get(meta, "schema");
    if (!v) return v.err();
    if (!*v) {
      found = schema_version;
      return tx.m_impl.put(meta, "schema", std::to_string(schema_version));
    }
    try {
      found = std::stoi(**v);
    } catch (std::exception const&) {
      return make_error(errc::corrupt, "store: damaged schema version");
    }
    if (found > schema_version)
      return make_error(errc::invalid_argument, "the store has schema " + std::to_string(found) +
                                                    ", written by a newer outlast; this one knows up to " +
                                                    std::to_string(schema_version));
    for (int from = found; from < schema_version; ++from) {
      if (auto m = migrations[from - 1](tx); !m) return m;
    }
    if (found < schema_version) return tx.m_impl.put(meta, "schema", std::to_string(schema_version));
    return {};
  });
  if (!st) return st.err();
  s->m_impl->schema = schema_version;
  return s;
}

store::store(std::unique_ptr<impl> p) : m_impl(std::move(p)) {}
store::~store() = default;

status store::write(std::function<status(txn&)> const& fn) { return m_impl->run(fn, true); }
status store::read(std::function<status(txn&)> const& fn) const { return m_impl->run(fn, false); }

std::size_t store::map_size() const {
  std::shared_lock lock(m_impl->resize_lock);
  MDB_envinfo info;
  mdb_env_info(m_impl->env, &info);
  return info.me_mapsize;
}

int store::schema() const { return m_impl->schema; }

status store::put_setting(std::string_view name, std::string_view value) {
  return write([&](txn& t) { return t.put_setting(name, value); });
}

result<std::optional<std::string>> store::get_setting(std::string_view name) const {
  std::optional<std::string> out;
  auto st = read([&](txn& t) -> status {
    auto v = t.get_setting(name);
    if (!v) return v.err();
    out = std::move(*v);
    return {};
  });
  if (!st) return st.err();
  return out;
}

result<record_outcome> store::put_record(crypto::signed_item const& item) {
  record_outcome outcome{};
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  auto st = write([&](txn& t) -> status {
    auto r = t.put_record(item, now);
    if (!r) return r.err();
    outcome = *r;
    return {};
  });
  if (!st) return st.err();
  return outcome;
}

result<std::optional<crypto::signed_item>> store::get_record(crypto::public_key const& key, std::string_view salt) const {
  std::optional<crypto::signed_item> out;
  auto st = read([&](txn& t) -> status {
    auto r = t.get_record(key, salt);
    if (!r) return r.err();
    out = std::move(*r);
    return {};
  });
  if (!st) return st.err();
  return out;
}

// --- txn ---

status txn::put_setting(std::string_view name, std::string_view value) { return m_impl.put(m_impl.db.settings, name, value); }
result<std::optional<std::string>> txn::get_setting(std::string_view name) { return m_impl.get(m_impl.db.settings, name); }
status txn::erase_setting(std::string_view name) { return m_impl.erase(m_impl.db.settings, name); }

status txn::put_key(std::string_view name, crypto::public_key const& key) {
  return m_impl.put(m_impl.db.keys, name, key_bytes(key));
}

result<std::optional<crypto::public_key>> txn::get_key(std::string_view name) {
  auto v = m_impl.get(m_impl.db.keys, name);
  if (!v) return v.err();
  if (!*v) return std::optional<crypto::public_key>{};
  if ((*v)->size() != crypto::public_key::size) return corrupt_value("key");
  crypto::public_key k;
  std::memcpy(k.bytes.data(), (*v)->data(), k.bytes.size());
  return std::optional<crypto::public_key>(k);
}

result<std::vector<std::pair<std::string, crypto::public_key>>> txn::list_keys() {
  std::vector<std::pair<std::string, crypto::public_key>> out;
  auto st = m_impl.scan(m_impl.db.keys, "", [&](std::string_view k, std::string_view v) -> status {
    if (v.size() != crypto::public_key::size) return corrupt_value("key");
    crypto::public_key pk;
    std::memcpy(pk.bytes.data(), v.data(), pk.bytes.size());
    out.emplace_back(std::string(k), pk);
    return {};
  });
  if (!st) return st.err();
  return out;
}

status txn::put_site(site_record const& s) {
  json j = {{"key", s.key.to_text()}, {"name", s.name}, {"role", to_string(s.role)},
            {"version", s.version}, {"added", s.added}};
  return m_impl.put(m_impl.db.sites, site_key(s.key, s.name), j.dump());
}

result<std::optional<site_record>> txn::get_site(crypto::public_key const& key, std::string_view name) {
  auto v = m_impl.get(m_impl.db.sites, site_key(key, name));
  if (!v) return v.err();
  if (!*v) return std::optional<site_record>{};
  auto s = decode_site(**v);
  if (!s) return s.err();
  return std::optional<site_record>(std::move(*s));
}

result<std::vector<site_record>> txn::list_sites() {
  std::vector<site_record> out;
  auto st = m_impl.scan(m_impl.db.sites, "", [&](std::string_view, std::string_view v) -> status {
    auto s = decode_site(v);
    if (!s) return s.err();
    out.push_back(std::move(*s));
    return {};
  });
  if (!st) return st.err();
  return out;
}

status txn::erase_site(crypto::public_key const& key, std::string_view name) {
  if (auto st = m_impl.erase(m_impl.db.sites, site_key(key, name)); !st) return st;
  std::vector<std::string> doomed;
  auto st = m_impl.scan(m_impl.db.versions, version_prefix(key, name), [&](std::string_view k, std::string_view) -> status {
    doomed.emplace_back(k);
    return {};
  });
  if (!st) return st;
  for (auto const& k : doomed)
    if (auto e = m_impl.erase(m_impl.db.versions, k); !e) return e;
  return {};
}

status txn::put_version(version_record const& v) {
  json j = {{"key", v.key.to_text()}, {"site", v.site}, {"seq", v.seq}, {"ih2", hex(v.ih2)},
            {"size", v.size}, {"time", v.time}, {"complete", v.complete}};
  return m_impl.put(m_impl.db.versions, version_prefix(v.key, v.site) + big_endian(static_cast<std::uint64_t>(v.seq)), j.dump());
}

status txn::erase_version(crypto::public_key const& key, std::string_view site, std::int64_t seq) {
  return m_impl.erase(m_impl.db.versions, version_prefix(key, site) + big_endian(static_cast<std::uint64_t>(seq)));
}

result<std::vector<version_record>> txn::list_versions(crypto::public_key const& key, std::string_view site) {
  std::vector<version_record> out;
  auto st = m_impl.scan(m_impl.db.versions, version_prefix(key, site), [&](std::string_view, std::string_view v) -> status {
    auto r = decode_version(v);
    if (!r) return r.err();
    out.push_back(std::move(*r));
    return {};
  });
  if (!st) return st.err();
  return out;
}

result<record_outcome> txn::put_record(crypto::signed_item const& item, std::int64_t now) {
  if (auto ok = crypto::verify_item(item); !ok) return ok.err();
  auto id = key_bytes(item.key) + item.salt;
  auto held = get_record(item.key, item.salt);
  if (!held) return held.err();
  auto keep_evidence = [&](std::string reason) -> status {
    static std::uint64_t counter = 0;  // distinguishes refusals within one second
    json j = {{"item", hex(crypto::as_bytes(crypto::encode_item(item)))}, {"reason", std::move(reason)}, {"time", now}};
    return m_impl.put(m_impl.db.refusals, id + '\0' + big_endian(static_cast<std::uint64_t>(now)) + big_endian(++counter), j.dump());
  };
  if (*held) {
    auto const& h = **held;
    if (h == item) return record_outcome::duplicate;
    if (item.seq < h.seq) {
      auto st = keep_evidence("older seq " + std::to_string(item.seq) + " than held " + std::to_string(h.seq));
      if (!st) return st.err();
      return record_outcome::stale;
    }
    if (item.seq == h.seq) {
      auto st = keep_evidence("same seq " + std::to_string(item.seq) + " with different content");
      if (!st) return st.err();
      return record_outcome::conflict;
    }
  }
  if (auto st = m_impl.put(m_impl.db.records, id, crypto::encode_item(item)); !st) return st.err();
  return record_outcome::stored;
}

result<std::optional<crypto::signed_item>> txn::get_record(crypto::public_key const& key, std::string_view salt) {
  auto v = m_impl.get(m_impl.db.records, key_bytes(key) + std::string(salt));
  if (!v) return v.err();
  if (!*v) return std::optional<crypto::signed_item>{};
  auto item = crypto::decode_item(**v);
  if (!item) return corrupt_value("record");
  return std::optional<crypto::signed_item>(std::move(*item));
}

result<std::vector<crypto::signed_item>> txn::list_records(crypto::public_key const& key) {
  std::vector<crypto::signed_item> out;
  auto st = m_impl.scan(m_impl.db.records, key_bytes(key), [&](std::string_view, std::string_view v) -> status {
    auto item = crypto::decode_item(v);
    if (!item) return corrupt_value("record");
    out.push_back(std::move(*item));
    return {};
  });
  if (!st) return st.err();
  return out;
}

result<std::vector<refusal>> txn::list_refusals() {
  std::vector<refusal> out;
  auto st = m_impl.scan(m_impl.db.refusals, "", [&](std::string_view, std::string_view v) -> status {
    auto j = json::parse(v, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return corrupt_value("refusal");
    try {
      auto raw = crypto::from_hex(j.at("item").get<std::string>());
      if (!raw) return corrupt_value("refusal");
      auto item = crypto::decode_item(std::string_view(reinterpret_cast<char const*>(raw->data()), raw->size()));
      if (!item) return corrupt_value("refusal");
      out.push_back({std::move(*item), j.at("reason").get<std::string>(), j.at("time").get<std::int64_t>()});
    } catch (json::exception const&) {
      return corrupt_value("refusal");
    }
    return {};
  });
  if (!st) return st.err();
  return out;
}

result<std::size_t> txn::count_refusals() {
  MDB_stat st;
  int rc = mdb_stat(m_impl.t, m_impl.db.refusals, &st);
  if (rc != 0) return lmdb_error(rc, "store stat");
  return static_cast<std::size_t>(st.ms_entries);
}

status txn::put_notice(crypto::signed_item const& item) {
  auto prefix = key_bytes(item.key);
  auto k = prefix + big_endian(static_cast<std::uint64_t>(item.seq));
  auto held = m_impl.get(m_impl.db.notices, k);
  if (!held) return held.err();
  if (*held) return {};
  if (auto st = m_impl.put(m_impl.db.notices, k, crypto::encode_item(item)); !st) return st;
  std::vector<std::string> keys;
  auto st = m_impl.scan(m_impl.db.notices, prefix, [&](std::string_view key, std::string_view) -> status {
    keys.emplace_back(key);
    return {};
  });
  if (!st) return st;
  for (std::size_t i = 0; i + max_notices_per_key < keys.size(); ++i)
    if (auto e = m_impl.erase(m_impl.db.notices, keys[i]); !e) return e;
  return {};
}

result<std::vector<crypto::signed_item>> txn::list_notices(std::optional<crypto::public_key> const& key) {
  std::vector<crypto::signed_item> out;
  auto st = m_impl.scan(m_impl.db.notices, key ? key_bytes(*key) : std::string(), [&](std::string_view, std::string_view v) -> status {
    auto item = crypto::decode_item(v);
    if (!item) return corrupt_value("notice");
    out.push_back(std::move(*item));
    return {};
  });
  if (!st) return st.err();
  return out;
}

status txn::put_blob(std::string_view space, std::string_view id, std::string_view data) {
  return m_impl.put(m_impl.db.blobs, std::string(space) + '\0' + std::string(id), data);
}

result<std::optional<std::string>> txn::get_blob(std::string_view space, std::string_view id) {
  return m_impl.get(m_impl.db.blobs, std::string(space) + '\0' + std::string(id));
}

status txn::erase_blob(std::string_view space, std::string_view id) {
  return m_impl.erase(m_impl.db.blobs, std::string(space) + '\0' + std::string(id));
}

}  // namespace outlast::storage
