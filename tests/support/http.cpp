#include "tests/support/http.hpp"

#include <sys/ioctl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace outlast::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

http_answer answer_of(http::response<http::string_body> const& res) {
  http_answer out;
  out.status = static_cast<int>(res.result_int());
  for (auto const& f : res) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(f.value());
  }
  out.body = res.body();
  return out;
}

}  // namespace

http_answer raw_http(int port, std::string const& request, std::chrono::milliseconds timeout, bool head) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  http_answer out;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1ull << 32);
  parser.skip(head);
  stream.expires_after(timeout);
  stream.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
                       [&](beast::error_code ec) {
                         if (ec) return;
                         asio::async_write(stream, asio::buffer(request), [&](beast::error_code wec, std::size_t) {
                           if (wec) return;
                           http::async_read(stream, buffer, parser, [&](beast::error_code rec, std::size_t) {
                             if (!rec) out = answer_of(parser.get());
                           });
                         });
                       });
  ioc.run();
  return out;
}

http_answer http_get(int port, std::string const& host, std::string const& target, std::string const& extra, std::string const& method) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n" + extra + "\r\n";
  return raw_http(port, req, std::chrono::seconds(20), method == "HEAD");
}

struct kept_alive::impl {
  asio::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
};

kept_alive::kept_alive(int port, int receive_buffer) : m(std::make_unique<impl>()) {
  auto& s = m->stream.socket();
  s.open(asio::ip::tcp::v4());
  if (receive_buffer > 0) s.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
  s.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
}

kept_alive::~kept_alive() = default;

void kept_alive::send(std::string const& host, std::string const& target) {
  asio::write(m->stream.socket(), asio::buffer("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"));
}

int kept_alive::queued() {
  int n = 0;
  ::ioctl(m->stream.socket().native_handle(), FIONREAD, &n);
  return n;
}

http_answer kept_alive::receive() {
  http::response_parser<http::string_body> parser;
  parser.body_limit(1ull << 32);
  http_answer out;
  m->stream.expires_after(std::chrono::seconds(20));
  http::async_read(m->stream, m->buffer, parser, [&](beast::error_code ec, std::size_t) {
    if (!ec) out = answer_of(parser.get());
  });
  m->ioc.restart();
  m->ioc.run();
  return out;
}

}  // namespace outlast::test
