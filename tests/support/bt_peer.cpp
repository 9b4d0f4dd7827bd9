#include "tests/support/bt_peer.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <libtorrent/bdecode.hpp>
#include <cerrno>
#include <stdexcept>

namespace outlast::test {

namespace {

void set_timeout(boost::asio::ip::tcp::socket& s, std::chrono::milliseconds t) {
  timeval tv{static_cast<time_t>(t.count() / 1000), static_cast<suseconds_t>((t.count() % 1000) * 1000)};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Plain recv/send: asio's blocking calls would wait past SO_RCVTIMEO.
void read_exactly(int fd, char* p, std::size_t n) {
  while (n > 0) {
    auto got = ::recv(fd, p, n, 0);
    if (got == 0) throw std::runtime_error("the node closed the connection");
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(errno == EAGAIN ? "timed out waiting for the node" : "recv failed");
    }
    p += got;
    n -= static_cast<std::size_t>(got);
  }
}

std::string frame(std::string const& body) {
  auto len = static_cast<std::uint32_t>(body.size());
  std::string out{static_cast<char>(len >> 24), static_cast<char>(len >> 16), static_cast<char>(len >> 8), static_cast<char>(len)};
  return out + body;
}

}  // namespace

bt_peer::bt_peer(std::string const& endpoint, std::array<std::uint8_t, 32> const& ih2, std::chrono::seconds timeout) {
  auto colon = endpoint.rfind(':');
  boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address(endpoint.substr(0, colon)),
                                    static_cast<unsigned short>(std::stoi(endpoint.substr(colon + 1))));
  m_socket.connect(ep);
  set_timeout(m_socket, timeout);
  std::string hs;
  hs += char(19);
  hs += "BitTorrent protocol";
  std::string reserved(8, '\0');
  reserved[5] = 0x10;  // BEP 10 extension protocol
  hs += reserved;
  hs.append(reinterpret_cast<char const*>(ih2.data()), 20);
  hs += "-XX0001-testpeer0001";
  if (!send_raw(hs)) throw std::runtime_error("cannot send the handshake");
  std::string theirs(68, '\0');
  read_exactly(m_socket.native_handle(), theirs.data(), theirs.size());
  if (theirs.compare(1, 19, "BitTorrent protocol") != 0) throw std::runtime_error("not a BitTorrent handshake");
  if (!(theirs[25] & 0x10)) throw std::runtime_error("the node does not offer extension messages");
  send_raw(frame(std::string{char(20), char(0)} + "d1:md12:outlast_filei32e12:outlast_pushi31eee"));
  for (int i = 0; i < 20; ++i) {
    auto m = read_message();
    if (m.size() < 2 || m[0] != 20 || m[1] != 0) continue;
    lt::error_code ec;
    auto h = lt::bdecode({m.data() + 2, static_cast<std::ptrdiff_t>(m.size() - 2)}, ec);
    if (ec) throw std::runtime_error("bad extension handshake");
    if (auto d = h.dict_find_dict("m")) {
      m_push_id = static_cast<int>(d.dict_find_int_value("outlast_push", 0));
      m_file_id = static_cast<int>(d.dict_find_int_value("outlast_file", 0));
    }
    return;
  }
  throw std::runtime_error("no extension handshake from the node");
}

std::string bt_peer::read_message() {
  for (;;) {
    unsigned char len_bytes[4];
    read_exactly(m_socket.native_handle(), reinterpret_cast<char*>(len_bytes), 4);
    std::uint32_t len = (std::uint32_t(len_bytes[0]) << 24) | (std::uint32_t(len_bytes[1]) << 16) | (std::uint32_t(len_bytes[2]) << 8) | len_bytes[3];
    if (len == 0) continue;  // keep-alive
    if (len > (1u << 20)) throw std::runtime_error("oversized message from the node");
    std::string body(len, '\0');
    read_exactly(m_socket.native_handle(), body.data(), body.size());
    return body;
  }
}

bool bt_peer::send_push(std::string const& payload) {
  return send_raw(frame(std::string{char(20), static_cast<char>(m_push_id)} + payload));
}

bool bt_peer::send_extended(int id, std::string const& payload) {
  return send_raw(frame(std::string{char(20), static_cast<char>(id)} + payload));
}

std::optional<std::string> bt_peer::next_extended(int our_id) {
  try {
    for (;;) {
      auto m = read_message();
      if (m.size() >= 2 && m[0] == 20 && static_cast<unsigned char>(m[1]) == our_id) return m.substr(2);
    }
  } catch (std::runtime_error const&) {
    return std::nullopt;
  }
}

bool bt_peer::send_raw(std::string const& bytes) {
  auto const* p = bytes.data();
  auto n = bytes.size();
  while (n > 0) {
    auto sent = ::send(m_socket.native_handle(), p, n, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    p += sent;
    n -= static_cast<std::size_t>(sent);
  }
  return true;
}

bool bt_peer::closed_by_node(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  set_timeout(m_socket, std::chrono::milliseconds(100));
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    auto got = ::recv(m_socket.native_handle(), buf, sizeof buf, 0);
    if (got == 0) return true;
    if (got < 0 && errno != EAGAIN && errno != EINTR) return true;
  }
  return false;
}

}  // namespace outlast::test
