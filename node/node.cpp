#include "node/node.hpp"

#include <unistd.h>

#include <boost/asio/post.hpp>
#include <csignal>
#include <thread>

#include "crypto/base32.hpp"
#include "node/detail/node_impl.hpp"
#include "node/keyring.hpp"

namespace outlast::node {

namespace asio = boost::asio;

namespace {
constexpr std::string_view session_space = "session";
constexpr std::string_view session_state_id = "state";
constexpr auto state_save_interval = std::chrono::minutes(10);
}  // namespace

net::http_response json_response(int status, json const& body) { return {status, "application/json", body.dump()}; }
net::http_response json_error(int status, std::string message) { return json_response(status, {{"error", std::move(message)}}); }

// Records the public halves of the home's keys in the store, so that the node knows which
// publishers are its own.
status node::impl::register_keys() {
  std::vector<std::string> problems;
  auto keys = keyring(cfg.home).list(&problems);
  if (!keys) return keys.err();
  for (auto const& p : problems) log.warn("keys", p);
  return store->write([&](storage::txn& t) -> status {
    for (auto const& k : *keys)
      if (auto st = t.put_key(k.name, k.key); !st) return st;
    return {};
  });
}

void node::impl::save_state() {
  if (!session) return;
  auto state = session->save_state();
  if (state.empty()) return;
  auto st = store->write([&](storage::txn& t) { return t.put_blob(session_space, session_state_id, state); });
  if (!st) log.error("store", "cannot save the session state: " + st.err().message);
}

void node::impl::schedule_save() {
  save_timer.expires_after(state_save_interval);
  save_timer.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    save_state();
    schedule_save();
  });
}

void node::impl::wait_for_signal() {
  signals.async_wait([this](boost::system::error_code ec, int sig) {
    if (ec) return;
    if (stopping) {
      // Second signal: the operator wants out now. LMDB commits are atomic, so nothing
      // acknowledged is lost by skipping the clean path.
      log.warn("node", "second signal, exiting at once");
      std::_Exit(128 + sig);
    }
    log.info("node", std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping (again to exit at once)");
    begin_stop();
    wait_for_signal();
  });
}

void node::impl::begin_stop() {
  if (stopping) return;
  stopping = true;
  cancel_jobs = true;
  for (auto* t : {&save_timer, &poll_timer, &republish_timer, &resume_timer, &view_timer, &forward_timer}) t->cancel();
  if (control) control->stop();
  if (gateway) gateway->stop();
  if (session) {
    // Last progress of every version, so that a restart neither re-hashes nor re-downloads.
    session->save_resume_data();
    session->drain_alerts(std::chrono::seconds(5));
  }
  save_state();
  if (session) session->stop();
  session.reset();
  workers.join();
  log.info("node", "stopped cleanly");
  // Keep the signal set alive until the io_context ends so a second signal is still caught.
  asio::post(ioc, [this] { ioc.stop(); });
}

json node::impl::status_json(site_table const& table) {
  auto s = session ? session->stats() : net::session_stats{};
  auto small = session ? session->small_file_counters() : net::small_file_stats{};
  std::size_t sites = table.size(), key_count = 0, refusals = 0;
  // Bytes of the versions on disk, as recorded (hard-linked unchanged files count once per version).
  std::int64_t storage_bytes = 0;
  for (auto const& [rec, snap] : table)
    for (auto const& v : snap.versions) storage_bytes += v.size;
  (void)store->read([&](storage::txn& t) -> status {
    if (auto k = t.list_keys()) key_count = k->size();
    if (auto r = t.count_refusals()) refusals = *r;
    return {};
  });
  return {
      {"listen", s.listen},
      {"gateway", gateway ? json(gateway->endpoint()) : json(nullptr)},
      {"payload_down", s.payload_down},
      {"corrupt", {{"bytes_discarded", s.failed_bytes}, {"peers_banned", s.banned_peers}}},
      {"payload_up", s.payload_up},
      {"storage_bytes", storage_bytes},
      {"dht_nodes", s.dht_nodes},
      {"dht_running", s.dht_running},
      {"peers", s.peers},
      {"sites", sites},
      {"keys", key_count},
      {"version", OUTLAST_VERSION},
      {"home", cfg.home.string()},
      {"pid", ::getpid()},
      {"uptime_s", std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count()},
      {"local_swarm", cfg.local_swarm},
      {"push", push_json()},
      {"small_files",
       {{"served", small.served}, {"bytes_served", small.bytes_served}, {"refused", small.refused}, {"received", small.received}}},
      {"storage", {{"used", storage_bytes}, {"max", std::int64_t(cfg.max_storage_mb) * 1000000}, {"max_site", std::int64_t(cfg.max_site_mb) * 1000000},
                   {"keep_versions", cfg.keep_versions}, {"refused_over_quota", over_quota}}},
      {"bandwidth", {{"max_upload", std::int64_t(cfg.max_upload_kbps) * 1000}, {"max_download", std::int64_t(cfg.max_download_kbps) * 1000}}},
      {"refused", {{"rollbacks_and_forks", refusals}, {"invalid", refused_invalid}, {"last", last_refusal}}},
  };
}

void node::impl::handle(net::http_request const& req, net::local_http_server::responder respond) {
  auto target = std::string_view(req.target);
  auto method_is = [&](char const* m) {
    if (req.method == m) return true;
    respond(json_error(405, std::string("use ") + m));
    return false;
  };
  auto body = [&]() -> std::optional<json> {
    auto j = json::parse(req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      respond(json_error(400, "the request body is not a JSON object"));
      return std::nullopt;
    }
    return j;
  };
  if (stopping) return respond(json_error(503, "the node is stopping"));
  if (target == "/v1/status") {
    if (method_is("GET")) respond(json_response(200, status_json()));
  } else if (target == "/v1/sites") {
    if (method_is("GET")) respond(json_response(200, sites_json()));
  } else if (target == "/v1/publish") {
    if (!method_is("POST")) return;
    if (auto j = body()) publish(*j, std::move(respond));
  } else if (target == "/v1/gc") {
    if (!method_is("POST")) return;
    auto freed = collect_garbage();
    respond(json_response(200, {{"freed", freed}}));
  } else if (target == "/v1/pin" || target == "/v1/unpin") {
    if (!method_is("POST")) return;
    if (auto j = body()) respond(pin(*j, target == "/v1/pin"));
  } else if (target == "/v1/export") {
    if (!method_is("POST")) return;
    if (auto j = body()) export_bundle(*j, std::move(respond));
  } else if (target == "/v1/import") {
    if (!method_is("POST")) return;
    if (auto j = body()) import_bundle(*j, std::move(respond));
  } else if (target == "/v1/follow") {
    if (!method_is("POST")) return;
    if (auto j = body()) respond(follow(*j));
  } else if (target == "/v1/unfollow") {
    if (!method_is("POST")) return;
    if (auto j = body()) respond(unfollow(*j));
  } else if (target.rfind("/v1/records?key=", 0) == 0) {
    if (!method_is("GET")) return;
    auto k = crypto::parse_public_key(target.substr(16));
    if (!k) return respond(json_error(400, k.err().message));
    respond(json_response(200, records_json(*k)));
  } else if (target == "/v1/records") {
    if (!method_is("POST")) return;
    auto j = body();
    if (!j) return;
    auto hex = j->value("item", "");
    auto raw = crypto::from_hex(hex);
    if (!raw) return respond(json_error(400, "'item' must be the hex of an encoded signed record"));
    auto item = crypto::decode_item(std::string(raw->begin(), raw->end()));
    if (!item) {
      ++refused_invalid;
      last_refusal = "control API: " + item.err().message;
      return respond(json_error(422, item.err().message));
    }
    auto outcome = accept_record(*item, "control API");
    if (!outcome) return respond(json_error(422, outcome.err().message));
    respond(json_response(*outcome == storage::record_outcome::stored || *outcome == storage::record_outcome::duplicate ? 200 : 409,
                          {{"outcome", storage::to_string(*outcome)}}));
  } else if (target == "/v1/notices" || target.rfind("/v1/notices?", 0) == 0) {
    if (req.method == "POST") {
      if (auto j = body()) respond(post_notice(*j));
      return;
    }
    if (!method_is("GET")) return;
    std::optional<crypto::public_key> key;
    bool all = false;
    auto q = target.find('?');
    auto query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
    while (!query.empty()) {
      auto amp = query.find('&');
      auto kv = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (kv == "all=1") all = true;
      if (kv.substr(0, 4) == "key=") {
        auto k = crypto::parse_public_key(kv.substr(4));
        if (!k) return respond(json_error(400, k.err().message));
        key = *k;
      }
    }
    respond(json_response(200, notices_json(key, all)));
  } else if (target.rfind("/v1/jobs/", 0) == 0) {
    if (!method_is("GET")) return;
    auto it = jobs.find(std::string(target.substr(9)));
    if (it == jobs.end()) return respond(json_error(404, "no such job"));
    std::lock_guard g(it->second->mutex);
    respond(json_response(200, {{"phase", it->second->phase}, {"done", it->second->done}, {"total", it->second->total}}));
  } else if (target == "/v1/keys/reload") {
    if (!method_is("POST")) return;
    if (auto st = register_keys(); !st) return respond(json_error(500, st.err().message));
    for (auto const& k : notice_keys()) ensure_beacon(k);
    respond(json_response(200, {{"ok", true}}));
  } else if (target == "/v1/stop") {
    if (!method_is("POST")) return;
    log.info("node", "stop requested through the control API");
    asio::post(ioc, [this] { begin_stop(); });
    respond(json_response(202, {{"stopping", true}}));
  } else {
    respond(json_error(404, "no such endpoint: " + std::string(target)));
  }
}

result<std::unique_ptr<node>> node::open(node_config cfg, logger& log) {
  log.set_level(parse_log_level(cfg.log_level));
  auto init = init_home(cfg.home);
  if (!init) return init.err();
  if (init->created_home) log.info("node", "created a new home in " + cfg.home.string());
  if (init->created_key) log.info("keys", "created the default publisher key " + *init->created_key);

  auto lock = home_lock::acquire(cfg.home);
  if (!lock) return lock.err();
  auto p = std::make_unique<impl>(std::move(cfg), log, std::move(*lock));

  auto store = storage::store::open(p->cfg.home / "store");
  if (!store) return store.err();
  p->store = std::move(*store);
  if (auto st = p->register_keys(); !st) return st.err();

  std::optional<std::string> saved;
  if (auto blob = p->store->read([&](storage::txn& t) -> status {
        auto b = t.get_blob(session_space, session_state_id);
        if (!b) return b.err();
        saved = std::move(*b);
        return {};
      });
      !blob)
    return blob.err();

  net::session_config sc;
  sc.listen = p->cfg.listen;
  sc.bootstrap = p->cfg.bootstrap;
  sc.peers = p->cfg.peers;
  sc.upnp = p->cfg.upnp;
  sc.natpmp = p->cfg.natpmp;
  sc.lsd = p->cfg.lsd;
  sc.local_swarm = p->cfg.local_swarm;
  sc.push = p->cfg.push;
  sc.upload_rate_limit = p->cfg.max_upload_kbps * 1000;
  sc.download_rate_limit = p->cfg.max_download_kbps * 1000;
  if (sc.local_swarm) log.warn("node", "local-swarm mode: libtorrent's per-IP protections are off (for tests only)");
  auto* raw = p.get();
  auto session = net::session::start(p->ioc, sc, saved, [raw](std::string const& level, std::string const& msg) {
    raw->log.write(parse_log_level(level), "swarm", msg);
  });
  if (!session) return session.err();
  p->session = std::move(*session);
  if (auto st = p->start_sites(); !st) return st.err();

  if (p->cfg.gateway != "off") {
    net::gateway_config gc;
    gc.listen = p->cfg.gateway;
    gc.request_timeout = std::chrono::seconds(p->cfg.gateway_timeout_s);
    // One thread per four cores by default: a gateway thread busy with many clients competes for
    // a core with libtorrent's network thread and with the clients themselves. On two cores, two
    // gateway threads under 64 busy connections had a p99 latency of 6.5-7.9 ms, one thread
    // 1.2-2.9 ms; one thread serves ~125k small-file requests/s (docs/performance.md).
    gc.threads = p->cfg.gateway_threads > 0 ? p->cfg.gateway_threads : std::max(1, net::usable_cores() / 4);
    auto gw = net::gateway::start(gc, [raw](std::string const& level, std::string const& msg) {
      raw->log.write(parse_log_level(level), "gateway", msg);
    });
    if (!gw) return gw.err();
    p->gateway = std::move(*gw);
    auto host = p->gateway->endpoint();
    if (host.rfind("127.", 0) != 0 && host.rfind("[::1]", 0) != 0)
      log.warn("gateway", "serving on " + host + ", a non-loopback address: everyone who can reach it can read every site here");
    log.info("gateway", "serving on http://" + host + "/ with " + std::to_string(gc.threads) +
                            (gc.threads == 1 ? " thread" : " threads"));
    p->refresh_view();
  }

  auto control = net::local_http_server::start(p->ioc, control_socket_path(p->cfg.home),
                                               [raw](net::http_request const& r, net::local_http_server::responder respond) {
                                                 raw->handle(r, std::move(respond));
                                               });
  if (!control) return control.err();
  p->control = std::move(*control);
  return std::unique_ptr<node>(new node(std::move(p)));
}

node::node(std::unique_ptr<impl> p) : m_impl(std::move(p)) {}

node::~node() {
  if (!m_impl->stopping) m_impl->begin_stop();
}

status node::run() {
  auto& p = *m_impl;
  p.wait_for_signal();
  p.schedule_save();
  p.schedule_poll();
  p.schedule_republish();
  p.schedule_resume_save();
  p.schedule_view();
  p.log.info("node", "running; home " + p.cfg.home.string() + ", control socket " + control_socket_path(p.cfg.home).string());
  // A bug in one handler must not take the node down with every site it serves: log and go on.
  for (;;) {
    try {
      p.ioc.run();
      break;
    } catch (std::exception const& e) {
      p.log.error("node", std::string("internal error, continuing: ") + e.what());
    }
  }
  return {};
}

void node::request_stop() {
  asio::post(m_impl->ioc, [p = m_impl.get()] { p->begin_stop(); });
}

}  // namespace outlast::node
