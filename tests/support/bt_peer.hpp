// A hand-driven BitTorrent peer for tests: it speaks just enough of the wire protocol (BEP 3
// handshake, BEP 10 extension handshake) to send a node arbitrary push and small-file messages,
// the way a hostile peer would. Blocking sockets with timeouts; test threads only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace outlast::test {

class bt_peer {
 public:
  // Connects to `endpoint` (IP:PORT), handshakes for the torrent whose v2 info-hash starts with
  // `ih2` (BEP 52 handshakes carry its first 20 bytes), offers the push (id 31) and small-file
  // (id 32, net/detail/small_files.hpp) extensions and waits for
  // the node's extension handshake. Throws std::runtime_error when any step fails.
  bt_peer(std::string const& endpoint, std::array<std::uint8_t, 32> const& ih2, std::chrono::seconds timeout = std::chrono::seconds(10));

  int push_id() const { return m_push_id; }  // the node's id for push messages; 0 if it offered none
  int file_id() const { return m_file_id; }  // the node's id for small-file messages; 0 if none
  // Sends one extended message with the node's id `id`. False once the node has closed.
  bool send_extended(int id, std::string const& payload);
  // The payload of the next extended message the node sends with our id `our_id`, others skipped;
  // nullopt if the node closes the connection or sends nothing for the timeout.
  std::optional<std::string> next_extended(int our_id);
  // Sends one push message (or raw bytes). False once the node has closed the connection.
  bool send_push(std::string const& payload);
  bool send_raw(std::string const& bytes);
  // Reads (and discards) until the node closes the connection or `timeout` passes.
  bool closed_by_node(std::chrono::milliseconds timeout);

 private:
  std::string read_message();  // one length-prefixed message; throws on EOF or timeout
  boost::asio::io_context m_ioc;
  boost::asio::ip::tcp::socket m_socket{m_ioc};
  int m_push_id = 0;
  int m_file_id = 0;
};

}  // namespace outlast::test
