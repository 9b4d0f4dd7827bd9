// outlast::node::node: the daemon. Composes the store, the BitTorrent session and the control
// API around one home, and owns all node state on one thread (the one that calls run()).
#pragma once

#include <memory>

#include "crypto/result.hpp"
#include "node/config.hpp"
#include "node/log.hpp"

namespace outlast::node {

class node {
 public:
  // Takes the home lock, opens the store, starts the session and binds the control socket.
  // Errors: busy (another node runs on this home), invalid_argument (config), io_error, corrupt.
  static result<std::unique_ptr<node>> open(node_config cfg, logger& log);
  ~node();

  // Serves until stopped by request_stop(), SIGINT or SIGTERM (a second signal exits at once),
  // then saves state and shuts down cleanly. Call once, on the thread that opened the node.
  status run();

  // Any thread.
  void request_stop();

  struct impl;

 private:
  explicit node(std::unique_ptr<impl> p);
  std::unique_ptr<impl> m_impl;
};

}  // namespace outlast::node
