// The libtorrent side of the push path: a session plugin whose peer plugins speak the
// "outlast_push" extension message (net/push.hpp) on every BitTorrent connection of a version
// whose publisher is known (add_torrent_params::userdata points at a publisher_tag).
//
// Threads: libtorrent calls the plugin on its network thread; everything here that touches a
// connection runs there. Received messages are bounded, rate-limited and decoded on that thread,
// then handed to `push_sink`, which must only post them elsewhere. The owner calls send / send_all
// / drop through boost::asio::post(session.get_context(), ...).
#pragma once

#include <libtorrent/extensions.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "crypto/keys.hpp"
#include "net/push.hpp"

namespace outlast::net::detail {

using peer_ref = std::uint64_t;  // one connection that speaks push; never reused

// Which publisher a torrent belongs to. Owned by the session, never freed while it runs.
struct publisher_tag {
  crypto::public_key key;
};

struct push_sink {
  // A connection in a swarm of `publisher` completed the extension handshake and speaks push.
  std::function<void(peer_ref, crypto::public_key const& publisher, std::string const& who)> hello;
  std::function<void(peer_ref, crypto::public_key const& publisher, std::string const& who, push_message msg)> message;
};

struct push_counters {
  std::atomic<std::int64_t> peers{0};         // connections speaking push now
  std::atomic<std::int64_t> received{0};      // messages accepted for decoding
  std::atomic<std::int64_t> sent{0};          // messages sent
  std::atomic<std::int64_t> dropped_rate{0};  // over a peer's rate limit, dropped unread
  std::atomic<std::int64_t> dropped_bad{0};   // oversized or malformed; the peer was disconnected
};

// Per connection: a token bucket of `rate` messages a second with bursts of `burst`. A peer
// that keeps sending far past it is disconnected.
struct push_limits {
  double rate = 50;
  double burst = 200;
  std::int64_t disconnect_after = 2000;  // messages dropped for rate on one connection
};

class push_peer;

class push_plugin final : public lt::plugin, public std::enable_shared_from_this<push_plugin> {
 public:
  push_plugin(push_sink sink, push_limits limits) : m_sink(std::move(sink)), m_limits(limits) {}

  std::shared_ptr<lt::torrent_plugin> new_torrent(lt::torrent_handle const&, lt::client_data_t userdata) override;

  // Network thread only.
  void send(peer_ref to, std::string const& payload);
  // To every push connection in a swarm of `publisher`, but not to the node behind `except`
  // (0: none).
  void send_all(crypto::public_key const& publisher, std::string const& payload, peer_ref except);
  void drop(peer_ref who);

  push_counters counters;

  // Called by push_peer (network thread).
  peer_ref attach(std::shared_ptr<push_peer> const& peer);
  void detach(peer_ref ref);
  push_sink const& sink() const { return m_sink; }
  push_limits const& limits() const { return m_limits; }

 private:
  push_sink m_sink;
  push_limits m_limits;
  peer_ref m_next = 1;
  std::map<peer_ref, std::weak_ptr<push_peer>> m_peers;
};

}  // namespace outlast::net::detail
