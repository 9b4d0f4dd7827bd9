// outlast::net::session: the node's libtorrent session (swarm and Mainline DHT), configured
// from session_config, with DHT state restored at start and saved on demand.
//
// Thread: construct, call and destroy it on the node thread that runs `ioc`; libtorrent's alerts
// are carried to that thread by posting to `ioc`. libtorrent runs its own threads inside.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/result.hpp"

namespace outlast::net {

struct session_config {
  // IP:PORT literals (IPv6 in brackets). Port 0 lets the system pick.
  std::vector<std::string> listen{"0.0.0.0:6881", "[::]:6881"};
  // HOST:PORT DHT routers; empty means none at all (tests). Defaults to public routers.
  std::vector<std::string> bootstrap{"dht.libtorrent.org:25401", "router.bittorrent.com:6881",
                                     "router.utorrent.com:6881", "dht.transmissionbt.com:6881"};
  std::vector<std::string> peers;  // static HOST:PORT peers for every swarm
  bool upnp = true;
  bool natpmp = true;
  bool lsd = true;
  // Lifts libtorrent's one-node-per-IP rules so many nodes on 127.0.0.1 can find each other.
  bool local_swarm = false;
};

// Errors: invalid_argument naming the bad entry.
status validate_endpoint(std::string const& text, bool require_ip_literal);

struct session_stats {
  std::vector<std::string> listen;  // endpoints actually bound (TCP), e.g. "127.0.0.1:40123"
  std::int64_t dht_nodes = 0;
  std::int64_t peers = 0;
  bool dht_running = false;
};

class session {
 public:
  using log_fn = std::function<void(std::string const& level, std::string const& message)>;

  // Starts the session. `saved_state` is what save_state() returned in an earlier run, if any;
  // a damaged state is logged and ignored (the DHT starts afresh).
  // Errors: invalid_argument (config), io_error (libtorrent refused to start).
  static result<std::unique_ptr<session>> start(boost::asio::io_context& ioc, session_config const& cfg,
                                                std::optional<std::string> saved_state, log_fn log);
  ~session();  // stops the session if stop() was not called; may block for a few seconds

  session_stats stats() const;  // refreshed about once a second
  std::string save_state() const;  // DHT node id and routing table, settings
  std::string dht_node_id() const;  // hex; empty until the DHT runs
  void stop();  // closes connections and waits for libtorrent to wind down

  struct impl;

 private:
  explicit session(std::shared_ptr<impl> p);
  std::shared_ptr<impl> m_impl;
};

}  // namespace outlast::net
