// Storage policy: per-site and per-node quotas, versions kept per site, pins, and garbage
// collection. A version over quota is refused before a byte of it is fetched; the last good
// version keeps serving.
#include <boost/algorithm/string/split.hpp>

#include "net/format.hpp"
#include "node/detail/node_impl.hpp"

namespace outlast::node {

namespace fs = std::filesystem;

namespace {

constexpr std::int64_t mb = 1000 * 1000;
using net::human_bytes;

}  // namespace

std::optional<std::string> disk_refusal(std::filesystem::path const& home, std::int64_t size, std::string const& what) {
  std::error_code ec;
  auto space = fs::space(home, ec);
  if (ec) return std::nullopt;  // cannot tell: let the write itself say
  // Room kept for the store, logs and resume data: 64 MiB, or 5% of a small disk.
  auto reserve = std::min<std::int64_t>(std::int64_t(64) << 20, static_cast<std::int64_t>(space.capacity / 20));
  auto free = static_cast<std::int64_t>(space.available);
  if (size + reserve <= free) return std::nullopt;
  return what + " needs " + human_bytes(size) + " and the disk holding " + home.string() + " has " + human_bytes(free) +
         " free (" + human_bytes(reserve) + " of it kept for the node's store)";
}

void read_site_policy(storage::txn& t, std::string const& address, site_snapshot& snap) {
  if (auto v = t.get_setting("max-size:" + address); v && *v) snap.max_size = std::stoll(**v);
  if (auto v = t.get_setting("upload-rate:" + address); v && *v) snap.upload_kbps = std::stoi(**v);
  if (auto v = t.get_setting("download-rate:" + address); v && *v) snap.download_kbps = std::stoi(**v);
  if (auto v = t.get_setting("pins:" + address); v && *v) {
    std::vector<std::string> parts;
    boost::split(parts, **v, [](char c) { return c == ','; });
    for (auto const& p : parts)
      if (!p.empty()) snap.pins.insert(std::stoll(p));
  }
}

status write_pins(storage::txn& t, std::string const& address, std::set<std::int64_t> const& pins) {
  std::string value;
  for (auto v : pins) {
    if (!value.empty()) value += ',';
    value += std::to_string(v);
  }
  return value.empty() ? t.erase_setting("pins:" + address) : t.put_setting("pins:" + address, value);
}

void node::impl::apply_site_rates(site_snapshot const& snap, net::version_spec& spec) {
  spec.upload_limit = snap.upload_kbps * 1000;
  spec.download_limit = snap.download_kbps * 1000;
}

std::int64_t node::impl::site_limit(site_snapshot const& snap) const {
  return snap.max_size.value_or(std::int64_t(cfg.max_site_mb) * mb);
}

std::optional<std::string> node::impl::quota_refusal(site_id const& s, site_snapshot const& snap, std::int64_t seq, std::int64_t size) {
  auto limit = site_limit(snap);
  if (limit > 0 && size > limit)
    return "version " + std::to_string(seq) + " is " + human_bytes(size) + ", over this site's limit of " + human_bytes(limit) +
           " (follow --max-size, or max-site-size in outlast.conf); the last good version keeps serving";
  if (auto full = disk_refusal(cfg.home, size, "version " + std::to_string(seq)))
    return *full + "; the last good version keeps serving, and it is tried again at the next poll";
  if (cfg.max_storage_mb <= 0) return std::nullopt;
  std::int64_t used = 0, reclaimable = 0;
  auto table = load_site_table();
  for (auto const& [rec, snap] : table) {
    int complete_seen = 0;
    for (auto it = snap.versions.rbegin(); it != snap.versions.rend(); ++it) {
      used += it->size;
      // What the new version pushes out of this site once it completes.
      if (rec.key == s.key && rec.name == s.site && it->complete && ++complete_seen >= cfg.keep_versions && !snap.pins.count(it->seq))
        reclaimable += it->size;
    }
  }
  auto after = used + size - reclaimable;
  auto cap = std::int64_t(cfg.max_storage_mb) * mb;
  if (after > cap)
    return "version " + std::to_string(seq) + " (" + human_bytes(size) + ") would bring this node's storage to " + human_bytes(after) +
           ", over max-storage " + human_bytes(cap) + "; the last good version keeps serving";
  return std::nullopt;
}

std::int64_t node::impl::collect_garbage() {
  std::int64_t freed = 0;
  for (auto const& rec : load_sites()) {
    site_id s{rec.key, rec.name};
    freed += prune_versions(s);
    // Folders no version record points at (a crash between the store and the disk).
    auto snap = load_site(s);
    std::error_code ec;
    for (auto const& e : fs::directory_iterator(version_dir(s, 0).parent_path(), ec)) {
      auto name = e.path().filename().string();
      auto stem = name.substr(0, name.find('.'));
      if (stem.empty() || stem.find_first_not_of("0123456789") != std::string::npos) continue;  // staging, imports
      auto seq = std::stoll(stem);
      bool known = false;
      for (auto const& v : snap.versions) known = known || v.seq == seq;
      bool busy = false;
      for (auto const& [ih, f] : fetching) busy = busy || (f.site == s && f.seq == seq);
      if (known || busy) continue;
      std::error_code sec;
      for (auto const& f : fs::recursive_directory_iterator(e.path(), sec))
        if (f.is_regular_file(sec)) freed += static_cast<std::int64_t>(f.file_size(sec));
      if (e.is_regular_file(sec)) freed += static_cast<std::int64_t>(e.file_size(sec));
      fs::remove_all(e.path(), sec);
      log.info("gc", "removed " + e.path().string() + ", which no version record names");
    }
  }
  return freed;
}

net::http_response node::impl::pin(json const& req, bool on) {
  auto s = parse_address(req.value("address", ""));
  if (!s) return json_error(400, s.err().message);
  auto seq = req.value("version", std::int64_t(0));
  auto snap = load_site(*s);
  if (!snap.record) return json_error(404, "this node holds no site " + s->address());
  auto p = snap.pins;
  if (on) {
    bool held = false;
    for (auto const& v : snap.versions) held = held || (v.seq == seq && v.complete);
    if (!held) return json_error(404, "no complete version " + std::to_string(seq) + " of " + s->address() + " here");
    p.insert(seq);
  } else if (!p.erase(seq)) {
    return json_error(404, "version " + std::to_string(seq) + " of " + s->address() + " is not pinned");
  }
  auto st = store->write([&](storage::txn& t) { return write_pins(t, s->address(), p); });
  if (!st) return json_error(500, st.err().message);
  log.info("gc", std::string(on ? "pinned " : "unpinned ") + s->address() + "@" + std::to_string(seq));
  if (!on) prune_versions(*s);
  return json_response(200, {{"address", s->address()}, {"version", seq}, {"pinned", on}});
}

}  // namespace outlast::node
