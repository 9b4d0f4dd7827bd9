// HTTP/1.1 over a Unix domain socket (Boost.Beast): the node's control API server and the
// client the CLI uses to reach it. The socket file is created with mode 0600, so only the
// node's user can drive the node; the TCP gateway never accepts control requests.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "crypto/result.hpp"

namespace outlast::net {

struct http_request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // "/v1/status"
  std::string body;
};

struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Serves requests on `ioc`'s thread; the handler runs there too (the node thread). A handler
// answers by calling `respond` once, at once or later (on the same thread) for long work.
class local_http_server {
 public:
  using responder = std::function<void(http_response)>;
  using handler = std::function<void(http_request const&, responder)>;
  inline static constexpr std::size_t max_body = 1 << 20;

  // Binds the socket (replacing a stale socket file) and starts accepting.
  // Errors: invalid_argument (path too long for a Unix socket), io_error.
  static result<std::unique_ptr<local_http_server>> start(boost::asio::io_context& ioc,
                                                          std::filesystem::path const& socket_path, handler h);
  ~local_http_server();  // closes the acceptor and removes the socket file
  void stop();

  struct impl;

 private:
  explicit local_http_server(std::shared_ptr<impl> p);
  std::shared_ptr<impl> m_impl;
};

// One request on a fresh connection, bounded by `timeout`. Blocking; any thread.
// Errors: unavailable (no socket, nobody listening), io_error (broken exchange, timeout).
result<http_response> local_http_call(std::filesystem::path const& socket_path, http_request const& req,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace outlast::net
