#include "net/local_http.hpp"

#include <sys/stat.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

namespace outlast::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;

namespace {

constexpr auto request_timeout = std::chrono::seconds(30);

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(local::socket s, std::shared_ptr<local_http_server::handler const> h)
      : m_stream(std::move(s)), m_handler(std::move(h)) {}

  void start() { read(); }

 private:
  void read() {
    m_parser.emplace();
    m_parser->body_limit(local_http_server::max_body);
    m_parser->header_limit(16 * 1024);
    m_stream.expires_after(request_timeout);
    http::async_read(m_stream, m_buffer, *m_parser,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted) {
      close();
      return;
    }
    if (ec) {
      respond({400, "application/json", R"({"error":"bad request: )" + ec.message() + "\"}"}, false);
      return;
    }
    auto const& req = m_parser->get();
    http_request r{std::string(req.method_string()), std::string(req.target()), req.body()};
    bool keep_alive = req.keep_alive();
    auto self = shared_from_this();
    auto answered = std::make_shared<bool>(false);
    try {
      (*m_handler)(r, [self, keep_alive, answered](http_response out) {
        if (*answered) return;
        *answered = true;
        self->respond(std::move(out), keep_alive);
      });
    } catch (std::exception const&) {
      if (!*answered) {
        *answered = true;
        respond({500, "application/json", R"({"error":"internal error"})"}, false);
      }
    }
  }

  void respond(http_response out, bool keep_alive) {
    http::response<http::string_body> res;
    res.result(static_cast<http::status>(out.status));
    res.set(http::field::content_type, out.content_type);
    res.set(http::field::server, "outlast");
    res.body() = std::move(out.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    m_response = std::move(res);
    m_stream.expires_never();
    http::async_write(m_stream, m_response, [self = shared_from_this()](beast::error_code wec, std::size_t) {
      if (wec || !self->m_response.keep_alive()) {
        self->close();
        return;
      }
      self->read();
    });
  }

  void close() {
    beast::error_code ignored;
    m_stream.socket().shutdown(local::socket::shutdown_both, ignored);
  }

  beast::basic_stream<local> m_stream;
  beast::flat_buffer m_buffer;
  std::optional<http::request_parser<http::string_body>> m_parser;
  http::response<http::string_body> m_response;
  std::shared_ptr<local_http_server::handler const> m_handler;
};

}  // namespace

struct local_http_server::impl : std::enable_shared_from_this<impl> {
  local::acceptor acceptor;
  std::filesystem::path path;
  std::shared_ptr<handler const> h;

  impl(asio::io_context& ioc, std::filesystem::path p, handler hh)
      : acceptor(ioc), path(std::move(p)), h(std::make_shared<handler const>(std::move(hh))) {}

  void accept() {
    acceptor.async_accept([self = shared_from_this()](beast::error_code ec, local::socket s) {
      if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
      if (!ec) std::make_shared<connection>(std::move(s), self->h)->start();
      self->accept();
    });
  }
};

result<std::unique_ptr<local_http_server>> local_http_server::start(asio::io_context& ioc, std::filesystem::path const& socket_path,
                                                                    handler h) {
  if (socket_path.native().size() >= sizeof(sockaddr_un::sun_path))
    return make_error(errc::invalid_argument, "the control socket path " + socket_path.string() +
                                                  " is too long for a Unix socket; use a shorter --home");
  auto p = std::make_shared<impl>(ioc, socket_path, std::move(h));
  std::error_code fec;
  std::filesystem::remove(socket_path, fec);  // a stale socket from a killed node; the home lock makes this safe
  beast::error_code ec;
  p->acceptor.open(local::endpoint(socket_path.string()).protocol(), ec);
  // Created 0600 from the start: no window in which another user could connect.
  mode_t old = ::umask(0177);
  if (!ec) p->acceptor.bind(local::endpoint(socket_path.string()), ec);
  ::umask(old);
  if (!ec) p->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(errc::io_error, "cannot listen on " + socket_path.string() + ": " + ec.message());
  ::chmod(socket_path.c_str(), 0600);
  p->accept();
  return std::unique_ptr<local_http_server>(new local_http_server(std::move(p)));
}

local_http_server::local_http_server(std::shared_ptr<impl> p) : m_impl(std::move(p)) {}
local_http_server::~local_http_server() { stop(); }

void local_http_server::stop() {
  if (!m_impl->acceptor.is_open()) return;
  beast::error_code ec;
  m_impl->acceptor.close(ec);
  std::error_code fec;
  std::filesystem::remove(m_impl->path, fec);
}

result<http_response> local_http_call(std::filesystem::path const& socket_path, http_request const& req,
                                      std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  beast::basic_stream<local> stream(ioc);
  beast::error_code ec;
  stream.socket().connect(local::endpoint(socket_path.string()), ec);
  if (ec) {
    if (ec == asio::error::connection_refused || ec == asio::error::not_found ||
        ec == boost::system::errc::no_such_file_or_directory)
      return make_error(errc::unavailable, "no node is running (no control socket at " + socket_path.string() + ")");
    return make_error(errc::unavailable, "cannot reach the node at " + socket_path.string() + ": " + ec.message());
  }
  http::request<http::string_body> r{http::string_to_verb(req.method), req.target, 11};
  r.set(http::field::host, "localhost");
  r.set(http::field::content_type, "application/json");
  r.body() = req.body;
  r.prepare_payload();
  http::response<http::string_body> res;
  beast::flat_buffer buffer;
  beast::error_code io_ec;
  stream.expires_after(timeout);
  http::async_write(stream, r, [&](beast::error_code e, std::size_t) {
    if (e) {
      io_ec = e;
      return;
    }
    http::async_read(stream, buffer, res, [&](beast::error_code e2, std::size_t) { io_ec = e2; });
  });
  ioc.run();
  if (io_ec) return make_error(errc::io_error, "talking to the node: " + io_ec.message());
  return http_response{static_cast<int>(res.result_int()), std::string(res[http::field::content_type]), res.body()};
}

}  // namespace outlast::net
