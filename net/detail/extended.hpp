// A BEP 10 extended message on a BitTorrent connection. Network thread only.
#pragma once

#include <libtorrent/bdecode.hpp>
#include <libtorrent/peer_connection_handle.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace outlast::net::detail {

// Frames `payload` as extended message `their_id` (the id the peer gave in its handshake). The
// frame's header and the payload go into the send buffer one after the other: the payload is
// copied once.
inline void send_extended(lt::bt_peer_connection_handle& pc, int their_id, std::string_view payload) {
  char header[6];
  auto len = static_cast<std::uint32_t>(payload.size() + 2);
  header[0] = static_cast<char>(len >> 24);
  header[1] = static_cast<char>(len >> 16);
  header[2] = static_cast<char>(len >> 8);
  header[3] = static_cast<char>(len);
  header[4] = 20;  // BEP 10 extended message
  header[5] = static_cast<char>(their_id);
  pc.send_buffer(header, static_cast<int>(sizeof header));
  pc.send_buffer(payload.data(), static_cast<int>(payload.size()));
}

// The id a peer's extension handshake gives extension `name`; 0 when it does not speak it (or
// the handshake is malformed).
inline int extension_id(lt::bdecode_node const& handshake, char const* name) {
  if (handshake.type() != lt::bdecode_node::dict_t) return 0;
  auto m = handshake.dict_find_dict("m");
  if (!m) return 0;
  auto id = m.dict_find_int_value(name, 0);
  return id <= 0 || id > 255 ? 0 : static_cast<int>(id);
}

}  // namespace outlast::net::detail
