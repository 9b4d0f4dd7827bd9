// The node's side of the push path (net/push.hpp): what a node tells a peer when they connect,
// what it does with records a peer sends, and how accepted records travel on.
//
// Flood with dedup: a record goes on only when the store accepts it as new (dedup by key, salt
// and seq), once per connected node of its publisher's swarms, never back to where it came from.
#include <chrono>
#include <ctime>

#include "crypto/base32.hpp"
#include "node/detail/node_impl.hpp"

namespace outlast::node {

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// What one "have" answer may carry: older notices beyond this are not replayed to late-comers.
constexpr std::size_t max_notice_backlog = 16;
// Records named in one "have": a publisher with more sites sends the newest ones only.
constexpr std::size_t max_have_entries = 96;
// An answer to a "have" goes out at once up to `answer_burst` records, well under a connection's
// burst (push_limits: 200, then 50/s), and the rest at `answer_rate` a second: a publisher of
// thousands of sites neither has its answer dropped for flooding (and the connection closed)
// nor leaves pointers behind that the DHT may not hold. Notices go first.
constexpr std::size_t answer_burst = 128;
constexpr int answer_per_tick = 2;  // every 50 ms: 40 a second

}  // namespace

void node::impl::ensure_beacon(crypto::public_key const& key) {
  if (!cfg.push || beacons.count(key)) return;
  auto dir = cfg.home / "beacons" / key.to_text();
  auto built = net::make_beacon(dir, key.to_text());
  if (!built) {
    log.warn("push", "cannot make the beacon of " + key.to_text() + ": " + built.err().message);
    return;
  }
  net::version_spec spec;
  spec.ih2 = built->ih2;
  spec.save_path = dir;
  spec.torrent = built->torrent;
  spec.seed = true;
  spec.push_publisher = key;
  if (auto added = session->add_version(spec); !added) {
    log.warn("push", "cannot join the beacon swarm of " + key.to_text() + ": " + added.err().message);
    return;
  }
  beacons[key] = built->ih2;
}

void node::impl::drop_beacon_if_unused(crypto::public_key const& key) {
  auto it = beacons.find(key);
  if (it == beacons.end()) return;
  if (notice_keys().count(key)) return;  // still a followed publisher, or one of our own keys
  session->remove_version(it->second, false);
  beacons.erase(it);
  std::error_code ec;
  std::filesystem::remove_all(cfg.home / "beacons" / key.to_text(), ec);
}

bool node::impl::is_beacon(net::info_hash2 const& ih2) const {
  for (auto const& [key, ih] : beacons)
    if (ih == ih2) return true;
  return false;
}

void node::impl::note_arrival(crypto::signed_item const& item, std::string const& via) {
  auto& a = arrivals[{item.key, item.salt}];
  if (a.seq >= item.seq && a.unix_ms != 0) return;
  a = {item.seq, now_ms(), via};
}

namespace {

// A publisher's records go on at most `forward_rate` a second (bursts of `forward_burst`): a key
// that signs a flood cannot make every mirror flood its peers. What is over the limit waits,
// newest per (key, salt) only, and goes when tokens are back: a legitimate burst arrives late,
// not never.
constexpr double forward_rate = 20, forward_burst = 100;

void refill(node::impl::token_bucket& b, std::chrono::steady_clock::time_point now) {
  b.tokens = b.tokens < 0 ? forward_burst
                          : std::min(forward_burst, b.tokens + std::chrono::duration<double>(now - b.last).count() * forward_rate);
  b.last = now;
}

}  // namespace

void node::impl::forward(crypto::signed_item const& item, net::peer_ref except) {
  if (!session || !cfg.push) return;
  auto& b = publisher_buckets[item.key];
  refill(b, std::chrono::steady_clock::now());
  if (b.tokens < 1 || !b.waiting.empty()) {
    ++push_held_back;
    auto& w = b.waiting[item.salt];
    if (w.first.seq < item.seq) w = {item, except};
    schedule_forward_flush();
    return;
  }
  b.tokens -= 1;
  session->push_record(item, except);
}

void node::impl::schedule_forward_flush() {
  if (forward_flush_pending) return;
  forward_flush_pending = true;
  forward_timer.expires_after(std::chrono::milliseconds(50));
  forward_timer.async_wait([this](boost::system::error_code ec) {
    forward_flush_pending = false;
    if (ec || stopping) return;
    bool more = false;
    for (auto it = answer_backlog.begin(); it != answer_backlog.end();) {
      std::vector<std::string> batch;
      for (int i = 0; i < answer_per_tick && !it->second.empty(); ++i) {
        batch.push_back(std::move(it->second.front()));
        it->second.pop_front();
      }
      session->push_send(it->first, std::move(batch));  // nothing, if that connection is gone
      it = it->second.empty() ? answer_backlog.erase(it) : std::next(it);
    }
    more = !answer_backlog.empty();
    auto now = std::chrono::steady_clock::now();
    for (auto& [key, b] : publisher_buckets) {
      refill(b, now);
      while (!b.waiting.empty() && b.tokens >= 1) {
        auto node = b.waiting.extract(b.waiting.begin());
        b.tokens -= 1;
        session->push_record(node.mapped().first, node.mapped().second);
      }
      more = more || !b.waiting.empty();
    }
    if (more) schedule_forward_flush();
  });
}

void node::impl::on_push_hello(net::peer_ref ref, crypto::public_key const& publisher, std::string const& who) {
  std::vector<net::have_entry> have;
  (void)store->read([&](storage::txn& t) -> status {
    auto held = t.list_records(publisher);
    if (!held) return held.err();
    for (auto const& r : *held) {
      if (have.size() == max_have_entries) break;
      have.push_back({r.salt, r.seq});
    }
    return {};
  });
  log.debug("push", who + " speaks push for " + publisher.to_text() + "; telling it about " + std::to_string(have.size()) + " records");
  session->push_send(ref, {net::encode_push_have(have)});
}

void node::impl::on_push_message(net::peer_ref ref, crypto::public_key const& publisher, std::string const& who,
                                 net::push_message const& msg) {
  if (msg.type == net::push_message::kind::record) {
    auto const& item = msg.record;
    if (item.key != publisher) {
      // Records travel only in their own publisher's swarms; an honest node never does this.
      ++refused_invalid;
      last_refusal = "push from " + who + ": a record of another publisher";
      session->push_drop(ref, "sent a record of another publisher");
      return;
    }
    auto outcome = accept_record(item, "push from " + who, ref);
    if (!outcome && (outcome.err().code == errc::bad_signature || outcome.err().code == errc::invalid_argument))
      session->push_drop(ref, outcome.err().message);
    return;
  }
  // "have": send what the peer lacks, oldest first, so each arrives as the newest it has seen.
  std::map<std::string, std::int64_t> theirs;
  for (auto const& h : msg.have) theirs[h.salt] = h.seq;
  std::vector<std::string> out, pointers;
  (void)store->read([&](storage::txn& t) -> status {
    auto held = t.list_records(publisher);
    if (!held) return held.err();
    for (auto const& r : *held) {
      auto it = theirs.find(r.salt);
      auto their_seq = it == theirs.end() ? std::int64_t(-1) : it->second;
      if (r.seq <= their_seq) continue;
      if (r.salt != crypto::notice_salt) {
        pointers.push_back(net::encode_push_record(r));
        continue;
      }
      auto history = t.list_notices(publisher);
      std::vector<crypto::signed_item> missing;
      if (history)
        for (auto const& n : *history)
          if (n.seq > their_seq && n.seq < r.seq) missing.push_back(n);
      if (missing.size() > max_notice_backlog - 1) missing.erase(missing.begin(), missing.end() - (max_notice_backlog - 1));
      for (auto const& n : missing) out.push_back(net::encode_push_record(n));
      out.push_back(net::encode_push_record(r));
    }
    return {};
  });
  for (auto& p : pointers) out.push_back(std::move(p));
  if (out.empty()) return;
  if (out.size() > answer_burst) {
    auto& later = answer_backlog[ref];
    later.assign(std::make_move_iterator(out.begin() + answer_burst), std::make_move_iterator(out.end()));
    out.resize(answer_burst);
    schedule_forward_flush();
  }
  log.debug("push", "sending " + std::to_string(out.size()) + " records of " + publisher.to_text() + " that " + who + " lacks");
  session->push_send(ref, std::move(out));
}

json node::impl::push_json() {
  auto c = session ? session->push_counters() : net::push_stats{};
  return {{"enabled", cfg.push},      {"peers", c.peers},           {"received", c.received},
          {"sent", c.sent},           {"dropped_rate", c.dropped_rate}, {"dropped_bad", c.dropped_bad},
          {"held_back", push_held_back}};
}

json node::impl::records_json(crypto::public_key const& key) {
  json out = json::array();
  (void)store->read([&](storage::txn& t) -> status {
    auto held = t.list_records(key);
    if (!held) return held.err();
    for (auto const& r : *held) {
      json j = {{"salt", r.salt}, {"seq", r.seq}, {"item", crypto::to_hex(crypto::as_bytes(crypto::encode_item(r)))}};
      if (auto it = arrivals.find({r.key, r.salt}); it != arrivals.end() && it->second.seq == r.seq) {
        j["received_ms"] = it->second.unix_ms;
        j["via"] = it->second.via;
      }
      out.push_back(std::move(j));
    }
    return {};
  });
  return out;
}

}  // namespace outlast::node
