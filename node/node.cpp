#include "node/node.hpp"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>

#include "net/local_http.hpp"
#include "net/session.hpp"
#include "node/home.hpp"
#include "node/keyring.hpp"
#include "storage/store.hpp"

namespace outlast::node {

using json = nlohmann::json;
namespace asio = boost::asio;

namespace {
constexpr std::string_view session_space = "session";
constexpr std::string_view session_state_id = "state";
constexpr auto state_save_interval = std::chrono::minutes(10);

net::http_response json_response(int status, json const& body) { return {status, "application/json", body.dump()}; }
net::http_response json_error(int status, std::string message) { return json_response(status, {{"error", std::move(message)}}); }
}  // namespace

struct node::impl {
  node_config cfg;
  logger& log;
  home_lock lock;
  std::unique_ptr<storage::store> store;
  asio::io_context ioc{1};
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  asio::steady_timer save_timer{ioc};
  std::unique_ptr<net::session> session;
  std::unique_ptr<net::local_http_server> control;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  bool stopping = false;

  impl(node_config c, logger& l, home_lock hl) : cfg(std::move(c)), log(l), lock(std::move(hl)) {}

  // Records the public halves of the home's keys in the store, so that the node knows which
  // publishers are its own.
  status register_keys() {
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

  void save_state() {
    if (!session) return;
    auto state = session->save_state();
    if (state.empty()) return;
    auto st = store->write([&](storage::txn& t) { return t.put_blob(session_space, session_state_id, state); });
    if (!st) log.error("store", "cannot save the session state: " + st.err().message);
  }

  void schedule_save() {
    save_timer.expires_after(state_save_interval);
    save_timer.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      save_state();
      schedule_save();
    });
  }

  void wait_for_signal() {
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

  void begin_stop() {
    if (stopping) return;
    stopping = true;
    save_timer.cancel();
    if (control) control->stop();
    save_state();
    if (session) session->stop();
    session.reset();
    log.info("node", "stopped cleanly");
    // Keep the signal set alive until the io_context ends so a second signal is still caught.
    asio::post(ioc, [this] { ioc.stop(); });
  }

  json status_json() const {
    auto s = session ? session->stats() : net::session_stats{};
    std::size_t sites = 0;
    std::size_t key_count = 0;
    (void)store->read([&](storage::txn& t) -> status {
      if (auto v = t.list_sites()) sites = v->size();
      if (auto k = t.list_keys()) key_count = k->size();
      return {};
    });
    return {
        {"listen", s.listen},
        {"gateway", nullptr},  // the gateway arrives with its own issue; null: not serving
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
    };
  }

  net::http_response handle(net::http_request const& req) {
    auto target = std::string_view(req.target);
    if (target == "/v1/status") {
      if (req.method != "GET") return json_error(405, "use GET");
      return json_response(200, status_json());
    }
    if (target == "/v1/keys/reload") {
      if (req.method != "POST") return json_error(405, "use POST");
      if (auto st = register_keys(); !st) return json_error(500, st.err().message);
      return json_response(200, {{"ok", true}});
    }
    if (target == "/v1/stop") {
      if (req.method != "POST") return json_error(405, "use POST");
      log.info("node", "stop requested through the control API");
      asio::post(ioc, [this] { begin_stop(); });
      return json_response(202, {{"stopping", true}});
    }
    return json_error(404, "no such endpoint: " + std::string(target));
  }
};

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
  if (sc.local_swarm) log.warn("node", "local-swarm mode: libtorrent's per-IP protections are off (for tests only)");
  auto* raw = p.get();
  auto session = net::session::start(p->ioc, sc, saved, [raw](std::string const& level, std::string const& msg) {
    raw->log.write(parse_log_level(level), "swarm", msg);
  });
  if (!session) return session.err();
  p->session = std::move(*session);

  auto control = net::local_http_server::start(p->ioc, control_socket_path(p->cfg.home),
                                               [raw](net::http_request const& r, net::local_http_server::responder respond) {
                                                 respond(raw->handle(r));
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
  p.log.info("node", "running; home " + p.cfg.home.string() + ", control socket " + control_socket_path(p.cfg.home).string());
  p.ioc.run();
  return {};
}

void node::request_stop() {
  asio::post(m_impl->ioc, [p = m_impl.get()] { p->begin_stop(); });
}

}  // namespace outlast::node
