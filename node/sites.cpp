// Publishing, following and mirroring sites: the node's side of design.md's "Moving things".
#include <sys/stat.h>

#include <boost/asio/post.hpp>
#include <ctime>

#include "crypto/base32.hpp"
#include "node/detail/node_impl.hpp"
#include "node/keyring.hpp"
#include "node/site_dir.hpp"

namespace outlast::node {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

std::int64_t now_s() { return static_cast<std::int64_t>(std::time(nullptr)); }

net::info_hash2 ih2_of(std::array<std::uint8_t, 32> const& a) { return a; }

std::string magnet(net::info_hash2 const& ih2) { return "magnet:?xt=urn:btmh:1220" + net::to_hex(ih2); }

std::string gateway_url(node_config const& cfg, site_id const& s) {
  auto port = cfg.gateway.substr(cfg.gateway.rfind(':') + 1);
  return "http://" + s.site + "." + s.key.to_text() + ".localhost:" + port + "/";
}

}  // namespace

result<site_id> parse_address(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos)
    return make_error(errc::invalid_argument, "an address is KEY/SITE (the publisher's 52-character key, a slash, the site name)");
  auto key = crypto::parse_public_key(text.substr(0, slash));
  if (!key) return make_error(errc::invalid_argument, "bad address: " + key.err().message);
  auto site = std::string(text.substr(slash + 1));
  while (!site.empty() && site.back() == '/') site.pop_back();
  if (!crypto::valid_site_name(site))
    return make_error(errc::invalid_argument, "bad address: site name '" + site + "' must be 1-63 of a-z, 0-9 and '-', not starting with '-'");
  return site_id{*key, site};
}

fs::path node::impl::version_dir(site_id const& s, std::int64_t seq) const {
  return cfg.home / "sites" / s.key.to_text() / s.site / std::to_string(seq);
}

bool node::impl::published_in_place(site_id const& s, std::int64_t seq) const {
  std::error_code ec;
  return fs::is_symlink(version_dir(s, seq) / s.site, ec);
}

site_snapshot node::impl::load_site(site_id const& s) const {
  site_snapshot snap;
  (void)store->read([&](storage::txn& t) -> status {
    if (auto r = t.get_site(s.key, s.site); r && *r) snap.record = **r;
    if (auto v = t.list_versions(s.key, s.site)) snap.versions = std::move(*v);
    if (auto r = t.get_record(s.key, s.site); r && *r) snap.pointer = **r;
    read_site_policy(t, s.address(), snap);
    return {};
  });
  return snap;
}

std::vector<storage::site_record> node::impl::load_sites() const {
  std::vector<storage::site_record> sites;
  auto st = store->read([&](storage::txn& t) -> status {
    auto v = t.list_sites();
    if (!v) return v.err();
    sites = std::move(*v);
    return {};
  });
  if (!st) log.error("store", "cannot list sites: " + st.err().message);
  return sites;
}

site_table node::impl::load_site_table() const {
  site_table table;
  auto st = store->read([&](storage::txn& t) -> status {
    auto sites = t.list_sites();
    if (!sites) return sites.err();
    for (auto& rec : *sites) {
      site_snapshot snap;
      snap.record = rec;
      if (auto v = t.list_versions(rec.key, rec.name)) snap.versions = std::move(*v);
      if (auto r = t.get_record(rec.key, rec.name); r && *r) snap.pointer = **r;
      read_site_policy(t, site_id{rec.key, rec.name}.address(), snap);
      table.emplace_back(std::move(rec), std::move(snap));
    }
    return {};
  });
  if (!st) log.error("store", "cannot list sites: " + st.err().message);
  return table;
}

void node::impl::retire_versions(site_id const& s, bool fetches_too) {
  for (auto it = seeding.begin(); it != seeding.end();) {
    if (it->second != s) {
      ++it;
      continue;
    }
    session->remove_version(it->first, false);
    it = seeding.erase(it);
  }
  if (!fetches_too) return;
  drop_queued_fetch(s);
  bool freed = false;
  for (auto it = fetching.begin(); it != fetching.end();) {
    if (it->second.site != s) {
      ++it;
      continue;
    }
    session->remove_version(it->first, true);
    it = fetching.erase(it);
    freed = true;
  }
  if (freed) start_queued_fetches();
}

// --- start-up ---

status node::impl::start_sites() {
  session->set_events({
      [this](crypto::signed_item const& item) { (void)accept_record(item, "DHT"); },
      [this](net::info_hash2 const& ih2) { on_version_finished(ih2); },
      [this](net::info_hash2 const& ih2, int file) {
        auto it = syncing_files.find(ih2);
        if (it != syncing_files.end() && file >= 0 && static_cast<std::size_t>(file) < it->second->ready.size())
          it->second->ready[static_cast<std::size_t>(file)].store(true, std::memory_order_release);
      },
      [this](net::info_hash2 const& ih2, std::string const& msg) { on_version_failed(ih2, msg); },
      [this](net::info_hash2 const& ih2, std::string const& blob) {
        if (is_beacon(ih2)) return;  // made afresh at every start
        auto st = store->write([&](storage::txn& t) { return t.put_blob(resume_space, net::to_hex(ih2), blob); });
        if (!st) log.error("store", "cannot save download progress: " + st.err().message);
        if (auto due = torrents_due.find(ih2); due != torrents_due.end()) {
          keep_torrent(ih2, due->second, blob);
          torrents_due.erase(due);
        }
      },
      [this] { on_dht_ready(); },
      [this](net::peer_ref ref, crypto::public_key const& publisher, std::string const& who) { on_push_hello(ref, publisher, who); },
      [this](net::peer_ref ref, crypto::public_key const& publisher, std::string const& who, net::push_message const& msg) {
        on_push_message(ref, publisher, who, msg);
      },
  });

  std::error_code import_ec;
  fs::remove_all(cfg.home / "sites" / ".import", import_ec);  // an import cut short: never visible
  for (auto const& rec : load_sites()) {
    site_id s{rec.key, rec.name};
    // Leftovers of a publish that was interrupted: never acknowledged, safe to drop.
    std::error_code ec;
    for (auto const& e : fs::directory_iterator(version_dir(s, 0).parent_path(), ec))
      if (e.path().filename().string().rfind(".staging-", 0) == 0) fs::remove_all(e.path(), ec);

    ensure_beacon(s.key);
    auto snap = load_site(s);
    for (auto const& v : snap.versions) {
      if (!v.complete) continue;  // every kept complete version seeds (see prune_versions)
      std::optional<std::string> resume;
      (void)store->read([&](storage::txn& t) -> status {
        if (auto b = t.get_blob(resume_space, net::to_hex(v.ih2)); b && *b) resume = **b;
        return {};
      });
      net::version_spec spec;
      spec.ih2 = v.ih2;
      spec.save_path = version_dir(s, v.seq);
      apply_site_rates(snap, spec);
      auto torrent_path = version_dir(s, v.seq).string() + ".torrent";
      if (published_in_place(s, v.seq)) {
        // The publisher's own files, which may have changed while the node was down. Seed mode
        // checks each piece before its first upload; resume data would vouch for pieces unchecked.
        if (v.seq != rec.version) continue;  // its files are a newer version's now
        std::error_code ec2;
        if (!fs::is_directory(spec.save_path / s.site, ec2)) {
          site_errors[s] = "version " + std::to_string(v.seq) + " was published with --no-copy from " +
                           fs::read_symlink(spec.save_path / s.site, ec2).string() + ", which is gone; publish again";
          log.error("sites", s.address() + ": " + site_errors[s]);
          continue;
        }
        resume.reset();
        spec.seed = true;
        spec.no_download = true;
      }
      if (resume) spec.resume = *resume;
      else if (auto t = crypto::read_small_file(torrent_path, 256 << 20)) spec.torrent = *t;
      std::error_code ec3;
      if (resume && !fs::exists(torrent_path, ec3))  // the node stopped before it was written
        keep_torrent(v.ih2, torrent_path, *resume);
      auto added = session->add_version(spec);
      if (!added && resume) {
        // Damaged resume data (a torn write, a bad disk): the .torrent beside the files still
        // says what they must be; libtorrent checks them against it and the version seeds again.
        log.warn("sites", s.address() + " version " + std::to_string(v.seq) + ": " + added.err().message +
                              "; checking its files against its .torrent instead");
        (void)store->write([&](storage::txn& t) { return t.erase_blob(resume_space, net::to_hex(v.ih2)); });
        spec.resume.clear();
        if (auto t = crypto::read_small_file(torrent_path, 256 << 20)) spec.torrent = *t;
        added = session->add_version(spec);
      }
      if (!added) {
        log.error("sites", s.address() + " version " + std::to_string(v.seq) + ": " + added.err().message);
        site_errors[s] = added.err().message;
        continue;
      }
      seeding[v.ih2] = s;
    }
    // A newer pointer than the version held: resume fetching it.
    if (snap.pointer && rec.role == storage::site_role::followed && snap.pointer->seq > rec.version) {
      if (auto p = crypto::decode_pointer(snap.pointer->value)) consider_pointer(s, snap.pointer->seq, *p);
    }
  }
  // Our own keys' swarms too: a publisher's node is where its notices start.
  for (auto const& k : notice_keys()) ensure_beacon(k);
  return {};
}

void node::impl::on_dht_ready() {
  log.info("sites", "DHT ready: looking up followed sites and re-announcing held pointers");
  poll_followed();
  republish();
}

// --- schedules ---

void node::impl::poll_followed() {
  std::set<crypto::public_key> publishers;
  for (auto const& s : load_sites()) {
    if (s.role != storage::site_role::followed) continue;
    session->get_item(s.key, s.name);
    publishers.insert(s.key);
  }
  for (auto const& key : publishers) session->get_item(key, std::string(crypto::notice_salt));
}

void node::impl::schedule_poll() {
  // Jitter spreads many mirrors' lookups over time instead of in bursts.
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  auto ms = static_cast<std::int64_t>(cfg.poll_interval_s * 1000 * jitter(rng));
  poll_timer.expires_after(std::chrono::milliseconds(ms));
  poll_timer.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    poll_followed();
    schedule_poll();
  });
}

void node::impl::retry_lookups() {
  auto now = std::chrono::steady_clock::now();
  for (auto it = lookups.begin(); it != lookups.end();) {
    auto& [s, when] = *it;
    auto snap = load_site(s);
    if (!snap.record || snap.pointer) {  // unfollowed, or found
      it = lookups.erase(it);
      continue;
    }
    if (now >= when.first) {
      session->get_item(s.key, s.site);
      when.second = std::min(when.second * 2, std::chrono::seconds(cfg.poll_interval_s));
      when.first = now + when.second;
    }
    ++it;
  }
}

// Every node re-puts the latest signed pointer it holds for each site it publishes or follows,
// with the publisher's signature: the site stays resolvable when the publisher is gone.
void node::impl::republish() {
  std::vector<crypto::signed_item> items;
  (void)store->read([&](storage::txn& t) -> status {
    auto sites = t.list_sites();
    if (!sites) return sites.err();
    for (auto const& s : *sites)
      if (auto r = t.get_record(s.key, s.name); r && *r) items.push_back(**r);
    return {};
  });
  for (auto const& key : notice_keys())  // the newest notice outlives its publisher's absence too
    if (auto r = store->get_record(key, crypto::notice_salt); r && *r) items.push_back(**r);
  for (auto const& item : items) session->put_item(item);
  if (!items.empty()) log.info("sites", "re-announced " + std::to_string(items.size()) + " signed records in the DHT");
}

void node::impl::schedule_republish() {
  republish_timer.expires_after(std::chrono::seconds(cfg.republish_interval_s));
  republish_timer.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    republish();
    schedule_republish();
  });
}

void node::impl::schedule_resume_save() {
  resume_timer.expires_after(std::chrono::seconds(cfg.resume_interval_s));
  resume_timer.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    session->save_resume_data();
    schedule_resume_save();
  });
}

// --- records and versions ---

result<storage::record_outcome> node::impl::accept_record(crypto::signed_item const& item, std::string const& source,
                                                          net::peer_ref from) {
  auto outcome = store->put_record(item);
  if (!outcome) {
    ++refused_invalid;
    last_refusal = source + ": " + outcome.err().message;
    log.warn("records", "refused a record from " + source + ": " + outcome.err().message);
    return outcome;
  }
  switch (*outcome) {
    case storage::record_outcome::stale:
    case storage::record_outcome::conflict:
      last_refusal = source + ": " + std::string(storage::to_string(*outcome)) + " record for " + item.key.to_text() + "/" + item.salt +
                     " seq " + std::to_string(item.seq);
      log.warn("records", "refused a " + std::string(storage::to_string(*outcome)) + " record from " + source + " for " +
                              item.key.to_text() + "/" + item.salt + " (seq " + std::to_string(item.seq) + "); kept as evidence");
      return outcome;
    case storage::record_outcome::duplicate:
      break;
    case storage::record_outcome::stored:
      note_arrival(item, source);
      forward(item, from);
      break;
  }
  if (item.salt == crypto::notice_salt) {
    if (*outcome != storage::record_outcome::stored) return outcome;
    auto st = store->write([&](storage::txn& t) { return t.put_notice(item); });
    if (!st) log.error("store", "cannot keep a notice: " + st.err().message);
    if (auto n = crypto::decode_notice(item.value))
      log.info("notices", std::string(crypto::to_string(n->sev)) + " notice " + std::to_string(item.seq) + " from " + item.key.to_text() +
                              " (" + source + "): " + n->msg);
    refresh_view();
    return outcome;
  }
  if (!crypto::valid_site_name(item.salt)) return outcome;
  site_id s{item.key, item.salt};
  auto rec = load_site(s).record;
  if (!rec || rec->role != storage::site_role::followed) return outcome;
  auto p = crypto::decode_pointer(item.value);
  if (!p) {
    site_errors[s] = "pointer seq " + std::to_string(item.seq) + " is signed but unreadable: " + p.err().message;
    log.warn("records", s.address() + ": " + site_errors[s]);
    return outcome;
  }
  if (*outcome == storage::record_outcome::stored)
    log.info("records", "new pointer for " + s.address() + ": version " + std::to_string(item.seq) + " from " + source);
  consider_pointer(s, item.seq, *p);
  return outcome;
}

void node::impl::consider_pointer(site_id const& s, std::int64_t seq, crypto::pointer const& p) {
  auto snap = load_site(s);
  auto const& rec = snap.record;
  if (!rec || seq <= rec->version) return;
  if (auto why = quota_refusal(s, snap, seq, p.size)) {
    if (site_errors[s] != *why) log.warn("sites", s.address() + ": " + *why);
    site_errors[s] = *why;
    ++over_quota;
    return;
  }
  for (auto const& [ih, f] : fetching) {
    if (f.site != s) continue;
    if (f.seq >= seq) return;  // already fetching this or a newer one
    log.info("sites", s.address() + ": version " + std::to_string(seq) + " supersedes version " + std::to_string(f.seq) + " being fetched");
    session->remove_version(ih, true);
    fetching.erase(ih);
    start_fetch(s, snap, seq, p);  // takes the slot it frees
    return;
  }
  if (auto q = queued_fetches.find(s); q != queued_fetches.end()) {
    if (q->second.first < seq) q->second = {seq, p};  // keeps its turn
    return;
  }
  if (int(fetching.size()) >= cfg.max_fetches) {
    fetch_queue.push_back(s);
    queued_fetches.emplace(s, std::pair{seq, p});
    log.info("sites", s.address() + " version " + std::to_string(seq) + " waits its turn (" + std::to_string(fetching.size()) +
                          " versions downloading, max-fetches " + std::to_string(cfg.max_fetches) + ")");
    return;
  }
  start_fetch(s, snap, seq, p);
}

void node::impl::start_queued_fetches() {
  while (int(fetching.size()) < cfg.max_fetches && !fetch_queue.empty()) {
    auto s = fetch_queue.front();
    fetch_queue.pop_front();
    auto q = queued_fetches.find(s);
    if (q == queued_fetches.end()) continue;  // dropped meanwhile
    auto [seq, p] = q->second;
    queued_fetches.erase(q);
    consider_pointer(s, seq, p);  // checks again: held, quota, followed
  }
}

void node::impl::drop_queued_fetch(site_id const& s) {
  queued_fetches.erase(s);  // its place in fetch_queue is skipped
}

void node::impl::retire_same_content(site_id const& s, net::info_hash2 const& ih2, std::int64_t seq, bool hand_over) {
  std::optional<storage::version_record> old;
  for (auto const& v : load_site(s).versions)
    if (v.seq < seq && v.ih2 == ih2) old = v;
  if (!old) return;
  leave_swarm(ih2);
  bool pin_moved = false;
  auto st = store->write([&](storage::txn& t) -> status {
    if (auto e = t.erase_version(s.key, s.site, old->seq); !e) return e;
    // A pin kept that content: it holds the new version now, or keep-versions could drop it.
    site_snapshot policy;
    read_site_policy(t, s.address(), policy);
    if ((pin_moved = policy.pins.erase(old->seq) > 0)) {
      policy.pins.insert(seq);
      if (auto e = write_pins(t, s.address(), policy.pins); !e) return e;
    }
    return t.erase_blob(pointer_space, pointer_id(s, old->seq));  // the resume data, by info-hash, stays
  });
  if (!st) log.error("store", "cannot drop version " + std::to_string(old->seq) + " of " + s.address() + ": " + st.err().message);
  std::error_code ec;
  auto from = version_dir(s, old->seq), to = version_dir(s, seq);
  bool handed = false;
  if (hand_over && old->complete && !published_in_place(s, old->seq)) {
    fs::remove_all(to, ec);
    fs::rename(from, to, ec);
    handed = !ec;
    if (handed) fs::rename(from.string() + ".torrent", to.string() + ".torrent", ec);
  }
  if (!handed) fs::remove_all(from, ec);
  fs::remove(from.string() + ".torrent", ec);
  log.info("sites", s.address() + ": version " + std::to_string(seq) + " has the content of version " + std::to_string(old->seq) +
                        " (a revert), which gives way to it" + (handed ? " with its files" : "") +
                        (pin_moved ? "; the pin on version " + std::to_string(old->seq) + " holds version " + std::to_string(seq) + " now" : ""));
}

void node::impl::start_fetch(site_id const& s, site_snapshot const& snap, std::int64_t seq, crypto::pointer const& p) {
  auto const& rec = snap.record;
  net::version_spec spec;
  spec.ih2 = ih2_of(p.ih2);
  if (auto other = seeding.find(spec.ih2); other != seeding.end() && other->second != s) {
    // One torrent per info-hash: the same content under two sites is seeded for the first only.
    auto why = "version " + std::to_string(seq) + " has the same content as " + other->second.address() +
               ", which this node holds; only one of the two can be mirrored here";
    if (site_errors[s] != why) log.warn("sites", s.address() + ": " + why);  // once, not at every poll
    site_errors[s] = why;
    return;
  }
  retire_same_content(s, spec.ih2, seq, true);
  spec.save_path = version_dir(s, seq);
  spec.max_size = std::max<std::int64_t>(p.size, 0) + (std::int64_t(1) << 20);  // the signed size, a little slack
  apply_site_rates(snap, spec);
  (void)store->read([&](storage::txn& t) -> status {
    if (auto b = t.get_blob(resume_space, net::to_hex(spec.ih2)); b && *b) spec.resume = **b;
    for (auto const& v : snap.versions)
      if (v.complete && v.seq == rec->version)
        if (auto b = t.get_blob(resume_space, net::to_hex(v.ih2)); b && *b) {
          spec.reuse_resume = **b;
          spec.reuse_path = version_dir(s, v.seq);
        }
    return {};
  });
  storage::version_record v{s.key, s.site, seq, p.ih2, p.size, p.time, false};
  auto st = store->write([&](storage::txn& t) -> status {
    if (auto e = t.put_version(v); !e) return e;
    // The pointer that names this version, kept with it (export --all).
    auto r = t.get_record(s.key, s.site);
    if (r && *r && (*r)->seq == seq) return t.put_blob(pointer_space, pointer_id(s, seq), crypto::encode_item(**r));
    return {};
  });
  if (!st) {
    log.error("store", st.err().message);
    return;
  }
  std::error_code ec;
  fs::create_directories(spec.save_path, ec);
  // Recorded first: a version whose files are all here already (a revert handed them over) may
  // report itself finished while it is added.
  fetching[spec.ih2] = fetch{s, seq, spec.ih2};
  if (auto added = session->add_version(spec); !added) {
    fetching.erase(spec.ih2);
    site_errors[s] = added.err().message;
    log.error("sites", s.address() + " version " + std::to_string(seq) + ": " + added.err().message);
    return;
  }
  site_errors.erase(s);
  log.info("sites", "fetching " + s.address() + " version " + std::to_string(seq) + " (" + std::to_string(p.size) + " bytes, " +
                        magnet(spec.ih2) + ")");
}

void node::impl::on_version_finished(net::info_hash2 const& ih2) {
  auto it = fetching.find(ih2);
  if (it == fetching.end()) return;  // a seed we added ourselves
  auto f = it->second;
  fetching.erase(it);
  heap_grew = true;
  start_queued_fetches();
  auto st = store->write([&](storage::txn& t) -> status {
    auto versions = t.list_versions(f.site.key, f.site.site);
    if (!versions) return versions.err();
    for (auto v : *versions)
      if (v.seq == f.seq) {
        v.complete = true;
        if (auto s = t.put_version(v); !s) return s;
      }
    auto rec = t.get_site(f.site.key, f.site.site);
    if (!rec) return rec.err();
    if (!*rec) return {};  // unfollowed meanwhile
    auto site = **rec;
    site.version = std::max(site.version, f.seq);
    return t.put_site(site);
  });
  if (!st) {
    log.error("store", "cannot record version " + std::to_string(f.seq) + " of " + f.site.address() + " as complete: " + st.err().message);
    return;
  }
  auto state = session->version_state(ih2);
  log.info("sites", "mirrored " + f.site.address() + " version " + std::to_string(f.seq) + " (downloaded " +
                        std::to_string(state ? state->payload_down : 0) + " bytes, reused " + std::to_string(state ? state->reused : 0) + ")");
  // Its .torrent (piece layers included) goes beside the files for export and restarts, built
  // from the resume data the session asked for as the version finished (keep_torrent).
  torrents_due[ih2] = version_dir(f.site, f.seq).string() + ".torrent";
  // The previous version keeps seeding until pruned, for peers still fetching it.
  seeding[ih2] = f.site;
  prune_versions(f.site);
  refresh_view();  // readers get the new version now, atomically
  if (auto r = store->get_record(f.site.key, f.site.site); r && *r) session->put_item(**r);  // we are a mirror now
}

// Writes a finished version's .torrent, piece layers included, from its resume data: libtorrent
// would build it on its network thread, which stalls every transfer for ~1.5 s on a large site
// (docs/performance.md). On the worker: the durable write (fsync) would hold up this thread.
void node::impl::keep_torrent(net::info_hash2 const& ih2, std::string const& path, std::string const& resume) {
  boost::asio::post(workers, [this, ih2, path, resume] {
    auto t = net::torrent_from_resume(resume, ih2);
    auto w = t ? crypto::write_private_file(path, *t, true) : status(t.err());
    boost::asio::post(ioc, [this, ih2, path, w] {
      if (stopping) return;  // written or not, the next start sees to it
      if (w) return refresh_view();
      log.warn("sites", "cannot keep the metadata of version " + net::to_hex(ih2) + " from its resume data (" + w.err().message +
                            "); asking libtorrent for it");
      auto slow = session ? session->torrent_file(ih2) : result<std::string>(make_error(errc::unavailable, "stopping"));
      if (!slow) return log.warn("sites", "cannot keep the metadata of version " + net::to_hex(ih2) + ": " + slow.err().message);
      boost::asio::post(workers, [this, path, t = std::move(*slow)] {
        auto w2 = crypto::write_private_file(path, t, true);
        boost::asio::post(ioc, [this, path, w2] {
          if (!w2) log.warn("sites", "cannot write " + path + ": " + w2.err().message);
          else refresh_view();
        });
      });
    });
  });
}

void node::impl::on_version_failed(net::info_hash2 const& ih2, std::string const& message) {
  if (auto it = fetching.find(ih2); it != fetching.end()) {
    // A failed fetch gives up its slot; the next look at the site's pointer (poll-interval)
    // tries again, resuming from what was verified.
    auto f = it->second;
    fetching.erase(it);
    session->remove_version(ih2, false);
    site_errors[f.site] = message + " (tried again at the next poll)";
    log.warn("sites", f.site.address() + " version " + std::to_string(f.seq) + ": " + message);
    start_queued_fetches();
    return;
  }
  if (auto jt = seeding.find(ih2); jt != seeding.end()) {
    site_errors[jt->second] = message;
    log.warn("sites", jt->second.address() + ": " + message);
  }
}

void node::impl::leave_swarm(net::info_hash2 const& ih2) {
  if (seeding.erase(ih2)) session->remove_version(ih2, false);
  if (fetching.erase(ih2)) session->remove_version(ih2, true);
}

// Keeps the newest `keep-versions` complete versions, pinned ones, and anything newer being
// fetched.
std::int64_t node::impl::prune_versions(site_id const& s) {
  std::vector<storage::version_record> doomed;
  auto pinned = load_site(s).pins;
  auto st = store->write([&](storage::txn& t) -> status {
    doomed.clear();  // the transaction may run again after the store grew
    auto versions = t.list_versions(s.key, s.site);
    if (!versions) return versions.err();
    int complete_seen = 0;
    for (auto it = versions->rbegin(); it != versions->rend(); ++it) {
      if (it->complete && ++complete_seen <= cfg.keep_versions) continue;
      if (!it->complete && complete_seen == 0) continue;  // newer than anything complete: in flight
      if (it->complete && pinned.count(it->seq)) continue;
      doomed.push_back(*it);
    }
    for (auto const& v : doomed) {
      if (auto e = t.erase_version(s.key, s.site, v.seq); !e) return e;
      if (auto e = t.erase_blob(resume_space, net::to_hex(v.ih2)); !e) return e;
      if (auto e = t.erase_blob(pointer_space, pointer_id(s, v.seq)); !e) return e;
    }
    return {};
  });
  if (!st) {
    log.error("store", "cannot prune old versions of " + s.address() + ": " + st.err().message);
    return 0;
  }
  std::int64_t freed = 0;
  for (auto const& v : doomed) {
    freed += v.size;
    log.info("gc", "removing " + s.address() + " version " + std::to_string(v.seq) + " (keep-versions " + std::to_string(cfg.keep_versions) + ")");
    leave_swarm(v.ih2);  // out of the swarm first, then off the disk
    std::error_code ec;
    fs::remove_all(version_dir(s, v.seq), ec);
    fs::remove(version_dir(s, v.seq).string() + ".torrent", ec);
  }
  return freed;
}

// --- publish ---

void node::impl::publish(json const& req, net::local_http_server::responder respond) {
  auto dir = fs::path(req.value("dir", ""));
  auto site_name = req.value("site", "");
  auto key_name = req.value("key", "default");
  bool force = req.value("force", false);
  bool no_copy = req.value("no_copy", false);
  auto job_id = req.value("job", "");
  std::optional<std::string> passphrase;
  if (req.contains("passphrase") && req["passphrase"].is_string()) passphrase = req["passphrase"].get<std::string>();

  if (!dir.is_absolute()) return respond(json_error(400, "the directory must be an absolute path"));
  if (!crypto::valid_site_name(site_name))
    return respond(json_error(400, "site name '" + site_name + "' must be 1-63 of a-z, 0-9 and '-', not starting with '-'"));
  auto kp = keyring(cfg.home).unlock(key_name, passphrase);
  if (!kp) return respond(json_error(kp.err().code == errc::wrong_passphrase ? 401 : 400, kp.err().message));
  site_id s{kp->public_half(), site_name};
  if (publishing[s]) return respond(json_error(409, "a publish of " + s.address() + " is already under way"));

  auto snap = load_site(s);
  auto const& rec = snap.record;
  auto const& held = snap.pointer;
  if (rec && rec->role == storage::site_role::followed)
    return respond(json_error(409, s.address() + " is followed here; unfollow it before publishing to it"));
  std::int64_t seq = std::max(held ? held->seq : 0, rec ? rec->version : 0) + 1;

  auto job = std::make_shared<publish_job>();
  if (!job_id.empty()) jobs[job_id] = job;
  publishing[s] = true;
  auto staging = version_dir(s, seq).parent_path() / (".staging-" + std::to_string(seq));
  auto shared_kp = std::make_shared<crypto::key_pair>(std::move(*kp));
  log.info("publish", "publishing " + dir.string() + " as " + s.address() + " version " + std::to_string(seq));
  // The last copied version, if it is still here: its unchanged files are linked, not copied.
  std::optional<std::pair<std::int64_t, json>> last;
  (void)store->read([&](storage::txn& t) -> status {
    auto b = t.get_blob(publish_files_space, s.address());
    if (!b || !*b) return {};
    auto j = json::parse(**b, nullptr, false);
    if (j.is_discarded() || !j.contains("seq") || !j["seq"].is_number_integer() || !j.contains("files") || !j["files"].is_object())
      return {};  // damaged: everything is copied, and a good record replaces it
    last.emplace(j["seq"].get<std::int64_t>(), std::move(j["files"]));
    return {};
  });
  if (last) {
    bool held_complete = false;
    for (auto const& v : snap.versions) held_complete = held_complete || (v.seq == last->first && v.complete);
    if (!held_complete || published_in_place(s, last->first)) last.reset();
  }

  asio::post(workers, [this, dir, s, seq, staging, job, job_id, shared_kp, force, no_copy, last = std::move(last),
                       respond = std::move(respond)]() mutable {
    auto fail = [&](error const& e) {
      std::error_code ec;
      fs::remove_all(staging, ec);
      asio::post(ioc, [this, s, job_id, e, respond] {
        publishing.erase(s);
        jobs.erase(job_id);
        log.warn("publish", s.address() + ": " + e.message);
        respond(json_error(e.code == errc::invalid_argument ? 400 : 500, e.message));
      });
    };
    auto scan = scan_site_dir(dir);
    if (!scan) return fail(scan.err());
    if (no_copy && scan->files.size() < 2) {
      no_copy = false;  // a one-file site becomes a single-file torrent, whose file would be moved
      scan->notes.push_back("a site of one file is always copied (--no-copy needs two files or more)");
    }
    std::error_code ec;
    fs::remove_all(staging, ec);
    json files_now;  // null: nothing to remember (--no-copy)
    std::int64_t linked = 0;
    if (!no_copy) {
      // Files unchanged since the last copied version will be hard links to its copy, with its
      // hashes: only the rest needs room.
      files_now = publish_reuse(s, last, staging, scan->files);
      std::int64_t to_copy = 0;
      for (auto const& f : scan->files) {
        if (f.reuse.empty()) to_copy += f.size;
        else ++linked;
      }
      if (auto full = disk_refusal(cfg.home, to_copy, "publishing " + dir.string()))
        return fail(make_error(errc::io_error, *full + "; nothing was written"));
    }
    auto progress = [job](char const* phase) {
      return [job, phase](std::int64_t done, std::int64_t total) {
        std::lock_guard g(job->mutex);
        job->phase = phase;
        job->done = done;
        job->total = total;
      };
    };
    result<net::built_torrent> built = make_error(errc::unavailable, "not built");
    if (no_copy) {
      // Seeded from the publisher's own files: the version's folder holds a symlink to the
      // directory, and the torrent lists exactly the files the scan accepted. Nothing is copied.
      auto source = fs::canonical(dir, ec);
      fs::create_directories(staging, ec);
      if (!ec) fs::create_directory_symlink(source, staging / s.site, ec);
      if (ec) return fail(make_error(errc::io_error, "cannot link " + staging.string() + " to " + dir.string() + ": " + ec.message()));
      for (auto const& f : scan->files) {
        if (f.source != source / f.relative) {  // a symlink inside the site: its target would be read twice over
          fs::remove_all(staging, ec);
          return fail(make_error(errc::invalid_argument, "cannot publish with --no-copy: " + f.relative.string() +
                                                             " is a symlink (publish without --no-copy to copy its target)"));
        }
      }
      built = net::hash_and_make_torrent(scan->files, s.site, progress("hashing"), &cancel_jobs);
      if (built && built->single_file) built = make_error(errc::invalid_argument, "a single-file site cannot be published with --no-copy");
    } else {
      // A private copy (the publisher may edit the directory again while we seed this version),
      // hashed as it is written: each byte is read once (the linked files: not at all).
      built = net::copy_and_make_torrent(scan->files, staging, s.site, progress("copying"), &cancel_jobs);
    }
    if (!built) return fail(built.err());
    asio::post(ioc, [this, s, seq, shared_kp, built = std::move(*built), force, notes = scan->notes, job_id, files_now, linked,
                     respond = std::move(respond)]() mutable {
      finish_publish(s, seq, shared_kp, std::move(built), force, std::move(notes), std::move(files_now), linked, std::move(respond));
      jobs.erase(job_id);
    });
  });
}

json node::impl::publish_reuse(site_id const& s, std::optional<std::pair<std::int64_t, json>> const& last, fs::path const& staging,
                               std::vector<net::source_file>& files) {
  std::error_code ec;
  fs::create_directories(staging, ec);
  struct stat made {};
  if (ec || ::stat(staging.c_str(), &made) != 0) return nullptr;
  // The filesystem's own clock, as its timestamps are: a file written from now on has an mtime
  // and a ctime at or after this, so it cannot pass for unchanged next time (git's "racy" rule).
  auto const since = stamp_ns(made.st_mtim);
  std::map<std::string, std::string> hashes;
  if (last)
    if (auto t = crypto::read_small_file(version_dir(s, last->first).string() + ".torrent", 256 << 20))
      if (auto h = net::piece_hashes(*t)) hashes = std::move(*h);
  json now = json::object();
  for (auto& f : files) {
    // The stamp the scan took: a file changed after it differs from it next time.
    auto m = f.mtime_ns, c = f.ctime_ns;
    if (m == 0 || m >= since || c >= since) continue;  // unknown, or too recent to vouch for: copied, and not remembered
    json seen = {f.size, m, c, f.inode, f.device};
    auto rel = f.relative.generic_string();
    if (last) {
      auto was = last->second.find(rel);
      auto h = hashes.find(rel);
      if (was != last->second.end() && *was == seen && h != hashes.end()) {
        f.reuse = version_dir(s, last->first) / s.site / f.relative;
        f.reuse_pieces = h->second;
      }
    }
    now[rel] = std::move(seen);
  }
  return now;
}

void node::impl::finish_publish(site_id s, std::int64_t seq, std::shared_ptr<crypto::key_pair> kp, net::built_torrent built,
                                bool force, std::vector<std::string> notes, json files_now, std::int64_t linked,
                                net::local_http_server::responder respond) {
  publishing.erase(s);
  auto staging = version_dir(s, seq).parent_path() / (".staging-" + std::to_string(seq));
  std::error_code ec;
  if (stopping) {
    fs::remove_all(staging, ec);
    return respond(json_error(503, "the node is stopping"));
  }
  std::optional<storage::version_record> latest;
  for (auto const& x : load_site(s).versions)
    if (x.complete) latest = x;
  json out = {{"address", s.address()}, {"infohash", net::to_hex(built.ih2)}, {"magnet", magnet(built.ih2)},
              {"url", gateway_url(cfg, s)}, {"files", built.files}, {"bytes", built.size}, {"notes", notes}};
  auto remember = [&](storage::txn& t, std::int64_t files_of) -> status {
    if (files_now.is_null()) return {};
    return t.put_blob(publish_files_space, s.address(), json{{"seq", files_of}, {"files", files_now}}.dump());
  };
  out["linked_files"] = linked;  // unchanged since the last copied version: hard links to it
  if (latest && latest->ih2 == built.ih2 && !force) {
    fs::remove_all(staging, ec);
    if (!published_in_place(s, latest->seq))
      (void)store->write([&](storage::txn& t) { return remember(t, latest->seq); });
    out["version"] = latest->seq;
    out["unchanged"] = true;
    log.info("publish", s.address() + ": unchanged since version " + std::to_string(latest->seq));
    return respond(json_response(200, out));
  }
  if (auto other = seeding.find(built.ih2); other != seeding.end() && other->second != s) {
    // One torrent per info-hash: the same content under two sites could be seeded for one only.
    fs::remove_all(staging, ec);
    return respond(json_error(409, "these files are exactly those of " + other->second.address() +
                                       ", which this node holds; publish them under one site only"));
  }
  auto final_dir = version_dir(s, seq);
  fs::remove_all(final_dir, ec);
  fs::rename(staging, final_dir, ec);
  if (ec) return respond(json_error(500, "cannot move the new version into place: " + ec.message()));
  if (auto st = crypto::write_private_file(final_dir.string() + ".torrent", built.torrent, true); !st)
    return respond(json_error(500, st.err().message));

  crypto::pointer p{built.ih2, now_s(), built.size};
  auto item = crypto::sign_item(*kp, s.site, seq, crypto::encode_pointer(p));
  if (!item) return respond(json_error(500, item.err().message));
  auto st = store->write([&](storage::txn& t) -> status {
    auto r = t.put_record(*item, now_s());
    if (!r) return r.err();
    if (*r != storage::record_outcome::stored) return make_error(errc::stale, "the store holds a newer pointer for this site");
    storage::site_record rec{s.key, s.site, storage::site_role::published, seq, now_s()};
    if (auto old = t.get_site(s.key, s.site); old && *old) rec.added = (*old)->added;
    if (auto e = t.put_site(rec); !e) return e;
    if (auto e = t.put_blob(pointer_space, pointer_id(s, seq), crypto::encode_item(*item)); !e) return e;
    if (auto e = remember(t, seq); !e) return e;
    return t.put_version({s.key, s.site, seq, built.ih2, built.size, p.time, true});
  });
  if (!st) return respond(json_error(500, "cannot record the new version: " + st.err().message));

  retire_same_content(s, built.ih2, seq, false);  // a revert: this version's own copy takes over
  net::version_spec spec;
  spec.ih2 = built.ih2;
  spec.save_path = final_dir;
  spec.torrent = built.torrent;
  spec.seed = true;
  spec.no_download = published_in_place(s, seq);
  if (auto added = session->add_version(spec); !added) return respond(json_error(500, added.err().message));
  seeding[built.ih2] = s;
  // Older versions published with --no-copy share the directory, whose files are this version's
  // now: they leave the swarm (mirrors still seed them).
  for (auto const& v : load_site(s).versions)
    if (v.seq < seq && published_in_place(s, v.seq) && seeding.erase(v.ih2)) session->remove_version(v.ih2, false);
  ensure_beacon(s.key);
  note_arrival(*item, "local");
  forward(*item, 0);
  session->put_item(*item);
  prune_versions(s);
  refresh_view();
  out["version"] = seq;
  out["unchanged"] = false;
  out["copied"] = !spec.no_download;
  log.info("publish", "published " + s.address() + " version " + std::to_string(seq) + ": " + std::to_string(built.files) +
                          " files, " + std::to_string(built.size) + " bytes, " + magnet(built.ih2));
  respond(json_response(200, out));
}

// --- follow ---

net::http_response node::impl::follow(json const& req) {
  auto s = parse_address(req.value("address", ""));
  if (!s) return json_error(400, s.err().message);
  bool created = false;
  auto st = store->write([&](storage::txn& t) -> status {
    auto rec = t.get_site(s->key, s->site);
    if (!rec) return rec.err();
    if (*rec) {
      if ((*rec)->role == storage::site_role::published)
        return make_error(errc::already_exists, "you publish " + s->address() + " from this node");
      return {};
    }
    created = true;
    return t.put_site({s->key, s->site, storage::site_role::followed, 0, now_s()});
  });
  if (!st) return json_error(st.err().code == errc::already_exists ? 409 : 500, st.err().message);
  if (req.contains("max_size") && req["max_size"].is_number_integer()) {
    auto limit = req["max_size"].get<std::int64_t>();
    if (limit <= 0) return json_error(400, "the size limit must be positive");
    if (auto e = store->write([&](storage::txn& t) { return t.put_setting("max-size:" + s->address(), std::to_string(limit)); }); !e)
      return json_error(500, e.err().message);
    site_errors.erase(*s);  // a refusal under the old limit may not hold any more
  }
  // Rate limits of the site's swarms, kB/s (0 lifts the site's own limit).
  bool rates_changed = false;
  for (auto const& [field, name] : {std::pair{"max_upload_rate", "upload-rate:"}, std::pair{"max_download_rate", "download-rate:"}}) {
    if (!req.contains(field)) continue;
    if (!req[field].is_number_integer() || req[field].get<std::int64_t>() < 0 || req[field].get<std::int64_t>() > 2000000)
      return json_error(400, std::string(field) + " must be a number of kB/s from 0 (no limit) to 2000000");
    auto kbps = req[field].get<std::int64_t>();
    auto e = store->write([&, name = name](storage::txn& t) {
      return kbps == 0 ? t.erase_setting(name + s->address()) : t.put_setting(name + s->address(), std::to_string(kbps));
    });
    if (!e) return json_error(500, e.err().message);
    rates_changed = true;
  }
  if (rates_changed) {
    auto snap = load_site(*s);
    net::version_spec rates;
    apply_site_rates(snap, rates);
    for (auto const& [ih, site] : seeding)
      if (site == *s) session->set_rate_limits(ih, rates.upload_limit, rates.download_limit);
    for (auto const& [ih, f] : fetching)
      if (f.site == *s) session->set_rate_limits(ih, rates.upload_limit, rates.download_limit);
    log.info("sites", s->address() + ": upload limit " + (snap.upload_kbps ? std::to_string(snap.upload_kbps) + " kB/s" : "none") +
                          ", download limit " + (snap.download_kbps ? std::to_string(snap.download_kbps) + " kB/s" : "none"));
  }
  if (created) log.info("sites", "following " + s->address());
  ensure_beacon(s->key);  // peers already in the publisher's swarm tell us its pointers at once
  // Act on a pointer we already hold (from an earlier follow or an import), then ask the DHT.
  if (auto r = store->get_record(s->key, s->site); r && *r)
    if (auto p = crypto::decode_pointer((*r)->value)) consider_pointer(*s, (*r)->seq, *p);
  session->get_item(s->key, s->site);
  lookups[*s] = {std::chrono::steady_clock::now() + std::chrono::seconds(2), std::chrono::seconds(2)};
  return json_response(200, {{"address", s->address()}, {"following", true}, {"new", created}});
}

net::http_response node::impl::unfollow(json const& req) {
  auto s = parse_address(req.value("address", ""));
  if (!s) return json_error(400, s.err().message);
  auto rec = load_site(*s).record;
  if (!rec) return json_error(404, "not following " + s->address());
  if (rec->role == storage::site_role::published) return json_error(409, "you publish " + s->address() + "; it cannot be unfollowed");
  retire_versions(*s, true);
  std::vector<storage::version_record> versions;
  auto st = store->write([&](storage::txn& t) -> status {
    if (auto v = t.list_versions(s->key, s->site)) versions = std::move(*v);
    for (auto const& v : versions) {
      if (auto e = t.erase_blob(resume_space, net::to_hex(v.ih2)); !e) return e;
      if (auto e = t.erase_blob(pointer_space, pointer_id(*s, v.seq)); !e) return e;
    }
    (void)t.erase_setting("pins:" + s->address());
    (void)t.erase_setting("max-size:" + s->address());
    (void)t.erase_setting("upload-rate:" + s->address());
    (void)t.erase_setting("download-rate:" + s->address());
    return t.erase_site(s->key, s->site);  // signed records stay: they are evidence and cheap
  });
  if (!st) return json_error(500, st.err().message);
  std::error_code ec;
  fs::remove_all(version_dir(*s, 0).parent_path(), ec);
  site_errors.erase(*s);
  drop_beacon_if_unused(s->key);
  log.info("sites", "unfollowed " + s->address() + " and removed its files");
  return json_response(200, {{"address", s->address()}, {"following", false}});
}

json node::impl::sites_json(site_table const& table) {
  // Swarm figures per site, gathered in one pass over the versions in the swarm.
  struct swarm_figures {
    int peers = 0;
    std::int64_t downloaded = 0, reused = 0;
    std::optional<double> fetch_progress;
  };
  std::map<site_id, swarm_figures> figures;
  auto states = session->version_states();
  for (auto const& [ih, f] : fetching) {
    auto& fig = figures[f.site];
    fig.fetch_progress = fig.fetch_progress.value_or(0);
    if (auto st = states.find(ih); st != states.end()) {
      fig.fetch_progress = st->second.progress;
      fig.peers += st->second.peers;
      fig.downloaded += st->second.payload_down;
      fig.reused += st->second.reused;
    }
  }
  // Every kept version seeds; peers are counted over them all (the busiest one), bytes are those
  // of the current version.
  std::map<net::info_hash2, net::torrent_state> seeded;
  for (auto const& [ih, owner] : seeding)
    if (auto st = states.find(ih); st != states.end()) {
      auto& fig = figures[owner];
      fig.peers = std::max(fig.peers, st->second.peers);
      seeded[ih] = st->second;
    }

  json out = json::array();
  for (auto const& [rec, snap] : table) {
    site_id s{rec.key, rec.name};
    auto const& pointer = snap.pointer;
    std::int64_t bytes = 0, latest = pointer ? pointer->seq : rec.version;
    for (auto const& v : snap.versions)
      if (v.seq == rec.version) bytes = v.size;
    auto fig = figures.count(s) ? figures[s] : swarm_figures{};
    bool fetching_now = fig.fetch_progress.has_value();
    if (!fetching_now)
      for (auto const& v : snap.versions)
        if (auto it = seeded.find(v.ih2); v.seq == rec.version && it != seeded.end()) {
          fig.downloaded = it->second.payload_down;
          fig.reused = it->second.reused;
        }
    double progress = fetching_now ? *fig.fetch_progress : (rec.version > 0 ? 1.0 : 0.0);
    int peers = fig.peers;
    std::int64_t downloaded = fig.downloaded, reused = fig.reused;
    std::optional<std::int64_t> age;
    if (pointer)
      if (auto p = crypto::decode_pointer(pointer->value)) age = now_s() - p->time;
    json j = {{"address", s.address()},
              {"role", storage::to_string(rec.role)},
              {"version", rec.version},
              {"latest", latest},
              {"bytes", bytes},
              {"complete", rec.version > 0 && !fetching_now && rec.version >= latest},
              {"progress", progress},
              {"peers", peers},
              {"age_s", age ? json(*age) : json(nullptr)},
              {"downloaded", downloaded},
              {"reused", reused},
              {"url", gateway_url(cfg, s)}};
    if (auto q = queued_fetches.find(s); q != queued_fetches.end()) j["queued"] = q->second.first;  // the version waiting
    if (auto e = site_errors.find(s); e != site_errors.end()) j["error"] = e->second;
    j["pinned"] = std::vector<std::int64_t>(snap.pins.begin(), snap.pins.end());
    j["kept"] = json::array();
    for (auto const& v : snap.versions)
      if (v.complete) j["kept"].push_back(v.seq);
    if (rec.role == storage::site_role::followed) {
      j["max_size"] = site_limit(snap);
      j["max_upload_rate"] = snap.upload_kbps;  // kB/s, 0: none of its own
      j["max_download_rate"] = snap.download_kbps;
    }
    out.push_back(j);
  }
  return out;
}

}  // namespace outlast::node
