#include "net/session.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/hex.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/session_params.hpp>
#include <libtorrent/session_stats.hpp>
#include <libtorrent/settings_pack.hpp>

#include <chrono>
#include <sstream>

namespace outlast::net {

namespace {

struct host_port {
  std::string host;
  int port = 0;
};

result<host_port> split_endpoint(std::string const& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return make_error(errc::invalid_argument, "'" + text + "' is not HOST:PORT");
  host_port hp;
  hp.host = text.substr(0, colon);
  if (hp.host.front() == '[') {
    if (hp.host.back() != ']') return make_error(errc::invalid_argument, "'" + text + "': unclosed '[' in IPv6 address");
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  auto port_text = text.substr(colon + 1);
  if (port_text.find_first_not_of("0123456789") != std::string::npos || port_text.size() > 5)
    return make_error(errc::invalid_argument, "'" + text + "': port must be a number from 0 to 65535");
  hp.port = std::stoi(port_text);
  if (hp.port > 65535) return make_error(errc::invalid_argument, "'" + text + "': port must be a number from 0 to 65535");
  return hp;
}

std::string join(std::vector<std::string> const& v) {
  std::string out;
  for (auto const& s : v) {
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

}  // namespace

status validate_endpoint(std::string const& text, bool require_ip_literal) {
  auto hp = split_endpoint(text);
  if (!hp) return hp.err();
  if (require_ip_literal) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(hp->host, ec);
    if (ec) return make_error(errc::invalid_argument, "'" + text + "': the address must be an IP literal (e.g. 127.0.0.1:6881 or [::1]:6881)");
  } else if (hp->port == 0) {
    return make_error(errc::invalid_argument, "'" + text + "': port 0 is not a peer's port");
  }
  return {};
}

struct session::impl : std::enable_shared_from_this<impl> {
  boost::asio::io_context& ioc;
  session_config cfg;
  log_fn log;
  std::unique_ptr<lt::session> ses;
  std::optional<lt::dht::dht_state> pending_dht_state;
  bool dht_enabled = false;
  bool bootstrapped = false;
  session_stats cached;
  boost::asio::steady_timer timer;
  int idx_dht_nodes = -1, idx_peers = -1;

  impl(boost::asio::io_context& io, session_config c, log_fn l)
      : ioc(io), cfg(std::move(c)), log(std::move(l)), timer(io) {}

  // Named routers go to dht_bootstrap_nodes, which libtorrent treats as routers (asked, never
  // kept in the routing table). IP-literal entries are peers we know (other mirrors, test nodes):
  // they would be ignored there as routers, so they are added as DHT nodes instead.
  std::vector<std::string> router_hosts() const {
    std::vector<std::string> out;
    for (auto const& b : cfg.bootstrap)
      if (!validate_endpoint(b, true)) out.push_back(b);
    return out;
  }

  lt::settings_pack settings(bool enable_dht) const {
    lt::settings_pack p;
    p.set_str(lt::settings_pack::user_agent, "Outlast/0.1.0 libtorrent/" LIBTORRENT_VERSION);
    p.set_str(lt::settings_pack::peer_fingerprint, "-OL0010-");
    p.set_str(lt::settings_pack::listen_interfaces, join(cfg.listen));
    p.set_str(lt::settings_pack::dht_bootstrap_nodes, join(router_hosts()));
    p.set_bool(lt::settings_pack::enable_dht, enable_dht);
    p.set_bool(lt::settings_pack::enable_upnp, cfg.upnp);
    p.set_bool(lt::settings_pack::enable_natpmp, cfg.natpmp);
    p.set_bool(lt::settings_pack::enable_lsd, cfg.lsd);
    // Mirrors are all seeds; seed-to-seed connections carry the push path, keep them.
    p.set_bool(lt::settings_pack::close_redundant_connections, false);
    p.set_int(lt::settings_pack::stop_tracker_timeout, 1);
    p.set_int(lt::settings_pack::alert_mask, static_cast<int>(
        lt::alert_category::error | lt::alert_category::status | lt::alert_category::dht |
        lt::alert_category::port_mapping | lt::alert_category::storage));
    if (cfg.local_swarm) {
      p.set_bool(lt::settings_pack::dht_restrict_routing_ips, false);
      p.set_bool(lt::settings_pack::dht_restrict_search_ips, false);
      p.set_int(lt::settings_pack::dht_block_ratelimit, 100000);
      p.set_bool(lt::settings_pack::allow_multiple_connections_per_ip, true);
    }
    return p;
  }

  void on_alerts() {
    if (!ses) return;
    std::vector<lt::alert*> alerts;
    ses->pop_alerts(&alerts);
    for (lt::alert* a : alerts) handle(a);
  }

  void handle(lt::alert* a) {
    if (auto* l = lt::alert_cast<lt::listen_succeeded_alert>(a)) {
      if (l->socket_type == lt::socket_type_t::tcp) {
        std::ostringstream ep;
        if (l->address.is_v6()) ep << '[' << l->address.to_string() << "]:" << l->port;
        else ep << l->address.to_string() << ':' << l->port;
        cached.listen.push_back(ep.str());
        log("info", "listening on " + ep.str());
      }
      if (!dht_enabled) enable_dht();
    } else if (auto* f = lt::alert_cast<lt::listen_failed_alert>(a)) {
      log("error", f->message());
    } else if (auto* s = lt::alert_cast<lt::session_stats_alert>(a)) {
      auto counters = s->counters();
      if (idx_dht_nodes >= 0) cached.dht_nodes = counters[static_cast<std::size_t>(idx_dht_nodes)];
      if (idx_peers >= 0) cached.peers = counters[static_cast<std::size_t>(idx_peers)];
    } else if (lt::alert_cast<lt::portmap_alert>(a) || lt::alert_cast<lt::portmap_error_alert>(a)) {
      log("info", a->message());
    } else if (a->category() & lt::alert_category::error) {
      log("warning", a->message());
    }
  }

  // On 2.0.8 a DHT started together with the session throws its saved state away: enable it only
  // once the listen socket is up, after handing it the saved state (shared/libtorrent-notes.md).
  void enable_dht() {
    dht_enabled = true;
    if (pending_dht_state) {
      ses->set_dht_state(std::move(*pending_dht_state));
      pending_dht_state.reset();
    }
    lt::settings_pack p;
    p.set_bool(lt::settings_pack::enable_dht, true);
    ses->apply_settings(std::move(p));
  }

  // add_dht_node calls made before the DHT runs are dropped silently: add them once it does.
  void add_bootstrap_nodes() {
    for (auto const& b : cfg.bootstrap) {
      if (!validate_endpoint(b, true)) continue;
      auto hp = split_endpoint(b);
      if (hp) ses->add_dht_node({hp->host, hp->port});
    }
  }

  std::string node_id() const {
    if (!ses || !ses->is_dht_running()) return {};
    auto st = ses->session_state(lt::session::save_dht_state);
    if (st.dht_state.nids.empty()) return {};
    return lt::aux::to_hex(st.dht_state.nids.front().second);
  }

  void tick() {
    if (!ses) return;
    cached.dht_running = ses->is_dht_running();
    if (cached.dht_running && !bootstrapped) {
      bootstrapped = true;
      add_bootstrap_nodes();
      log("info", "DHT running, node id " + node_id());
    }
    ses->post_session_stats();
    timer.expires_after(bootstrapped ? std::chrono::seconds(1) : std::chrono::milliseconds(50));
    timer.async_wait([w = weak_from_this()](boost::system::error_code ec) {
      if (auto self = w.lock(); self && !ec) self->tick();
    });
  }
};

result<std::unique_ptr<session>> session::start(boost::asio::io_context& ioc, session_config const& cfg,
                                                std::optional<std::string> saved_state, log_fn log) {
  for (auto const& l : cfg.listen)
    if (auto ok = validate_endpoint(l, true); !ok) return make_error(errc::invalid_argument, "listen: " + ok.err().message);
  for (auto const& b : cfg.bootstrap)
    if (auto ok = validate_endpoint(b, false); !ok) return make_error(errc::invalid_argument, "bootstrap: " + ok.err().message);
  for (auto const& p : cfg.peers)
    if (auto ok = validate_endpoint(p, false); !ok) return make_error(errc::invalid_argument, "peer: " + ok.err().message);
  if (cfg.listen.empty()) return make_error(errc::invalid_argument, "listen: at least one address is needed");

  auto p = std::make_shared<impl>(ioc, cfg, std::move(log));
  lt::session_params params;
  if (saved_state && !saved_state->empty()) {
    try {
      auto restored = lt::read_session_params({saved_state->data(), static_cast<std::ptrdiff_t>(saved_state->size())},
                                              lt::session::save_dht_state);
      p->pending_dht_state = std::move(restored.dht_state);
    } catch (std::exception const& e) {
      p->log("warning", std::string("saved DHT state is damaged, starting afresh: ") + e.what());
    }
  }
  params.settings = p->settings(false);
  p->idx_dht_nodes = lt::find_metric_idx("dht.dht_nodes");
  p->idx_peers = lt::find_metric_idx("peer.num_peers_connected");
  try {
    p->ses = std::make_unique<lt::session>(std::move(params));
  } catch (std::exception const& e) {
    return make_error(errc::io_error, std::string("cannot start the BitTorrent session: ") + e.what());
  }
  std::weak_ptr<impl> weak = p;
  p->ses->set_alert_notify([weak, &ioc] {
    boost::asio::post(ioc, [weak] {
      if (auto self = weak.lock()) self->on_alerts();
    });
  });
  p->tick();
  return std::unique_ptr<session>(new session(std::move(p)));
}

session::session(std::shared_ptr<impl> p) : m_impl(std::move(p)) {}

session::~session() { stop(); }

session_stats session::stats() const { return m_impl->cached; }

std::string session::save_state() const {
  if (!m_impl->ses) return {};
  auto params = m_impl->ses->session_state(lt::session::save_dht_state);
  // Until the DHT has run, the saved state would be empty: keep the one we were given.
  if (m_impl->pending_dht_state) params.dht_state = *m_impl->pending_dht_state;
  auto buf = lt::write_session_params_buf(params, lt::session::save_dht_state);
  return std::string(buf.begin(), buf.end());
}

std::string session::dht_node_id() const { return m_impl->node_id(); }

void session::stop() {
  if (!m_impl->ses) return;
  m_impl->timer.cancel();
  m_impl->ses->set_alert_notify([] {});
  auto proxy = m_impl->ses->abort();
  m_impl->ses.reset();
  // proxy's destructor waits for libtorrent's threads to finish.
}

}  // namespace outlast::net
