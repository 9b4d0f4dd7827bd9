#include "net/detail/push_plugin.hpp"

#include "net/detail/extended.hpp"

#include <libtorrent/bdecode.hpp>
#include <libtorrent/entry.hpp>
#include <libtorrent/error_code.hpp>
#include <libtorrent/peer_connection_handle.hpp>

#include <chrono>
#include <optional>
#include <sstream>

namespace outlast::net::detail {

namespace {

// Our id for push messages in the extension handshake; the peer tells us its own.
constexpr int local_msg_id = 31;

std::string describe(lt::tcp::endpoint const& ep) {
  std::ostringstream out;
  if (ep.address().is_v6()) out << '[' << ep.address().to_string() << "]:" << ep.port();
  else out << ep.address().to_string() << ':' << ep.port();
  return out.str();
}

}  // namespace

class push_peer final : public lt::peer_plugin, public std::enable_shared_from_this<push_peer> {
 public:
  push_peer(std::shared_ptr<push_plugin> hub, lt::bt_peer_connection_handle pc, crypto::public_key publisher)
      : m_hub(std::move(hub)), m_pc(std::move(pc)), m_publisher(publisher), m_tokens(m_hub->limits().burst),
        m_refill(std::chrono::steady_clock::now()) {}

  lt::string_view type() const override { return push_extension_name; }

  void add_handshake(lt::entry& e) override { e["m"][push_extension_name] = local_msg_id; }

  bool on_extension_handshake(lt::bdecode_node const& h) override {
    auto id = extension_id(h, push_extension_name);
    if (id == 0) return false;  // the peer does not speak push: this plugin goes away
    bool first = m_their_id == 0;
    m_their_id = id;
    if (first) {
      m_ref = m_hub->attach(shared_from_this());
      m_who = describe(m_pc.remote());
      if (m_hub->sink().hello) m_hub->sink().hello(m_ref, m_publisher, m_who);
    }
    return true;
  }

  void on_disconnect(lt::error_code const&) override {
    if (m_ref) m_hub->detach(m_ref);
    m_ref = 0;
  }

  bool on_extended(int length, int msg, lt::span<char const> body) override {
    if (msg != local_msg_id) return false;
    if (m_ref == 0) return false;  // push before the handshake: libtorrent disconnects the peer
    if (length < 0 || static_cast<std::size_t>(length) > max_push_payload) {
      ++m_hub->counters.dropped_bad;
      disconnect();  // oversized
      return true;
    }
    if (!m_pc.packet_finished()) return true;
    if (!take_token()) {
      ++m_hub->counters.dropped_rate;
      if (++m_dropped > m_hub->limits().disconnect_after) disconnect();  // flooding
      return true;
    }
    auto decoded = decode_push({body.data(), static_cast<std::size_t>(body.size())});
    if (!decoded) {
      ++m_hub->counters.dropped_bad;
      disconnect();  // malformed
      return true;
    }
    ++m_hub->counters.received;
    if (m_hub->sink().message) m_hub->sink().message(m_ref, m_publisher, m_who, std::move(*decoded));
    return true;
  }

  void send(std::string const& payload) {
    if (m_their_id == 0 || m_pc.is_disconnecting()) return;
    send_extended(m_pc, m_their_id, payload);
    ++m_hub->counters.sent;
  }

  void disconnect() {
    m_pc.disconnect(lt::errors::make_error_code(lt::errors::invalid_message), lt::operation_t::bittorrent,
                    lt::peer_connection_interface::peer_error);
  }

  // Every node of a beacon swarm is a seed of it: the reasons libtorrent closes a connection
  // between seeds (or idle ones when slots run short) do not apply to the push path.
  bool can_disconnect(lt::error_code const& ec) override {
    return !(ec == lt::errors::upload_upload_connection || ec == lt::errors::uninteresting_upload_peer ||
             ec == lt::errors::torrent_finished || ec == lt::errors::timed_out_no_interest);
  }

  crypto::public_key const& publisher() const { return m_publisher; }
  lt::peer_id const& pid() const { return m_pc.pid(); }
  bool disconnecting() const { return m_pc.is_disconnecting(); }

 private:
  bool take_token() {
    auto now = std::chrono::steady_clock::now();
    auto const& lim = m_hub->limits();
    m_tokens = std::min(lim.burst, m_tokens + std::chrono::duration<double>(now - m_refill).count() * lim.rate);
    m_refill = now;
    if (m_tokens < 1) return false;
    m_tokens -= 1;
    return true;
  }

  std::shared_ptr<push_plugin> m_hub;
  lt::bt_peer_connection_handle m_pc;
  crypto::public_key m_publisher;
  int m_their_id = 0;
  peer_ref m_ref = 0;
  std::string m_who;
  double m_tokens;
  std::chrono::steady_clock::time_point m_refill;
  std::int64_t m_dropped = 0;
};

namespace {

class push_torrent final : public lt::torrent_plugin {
 public:
  push_torrent(std::shared_ptr<push_plugin> hub, crypto::public_key publisher) : m_hub(std::move(hub)), m_publisher(publisher) {}

  std::shared_ptr<lt::peer_plugin> new_connection(lt::peer_connection_handle const& pc) override {
    if (pc.type() != lt::connection_type::bittorrent) return {};
    return std::make_shared<push_peer>(m_hub, lt::bt_peer_connection_handle(pc), m_publisher);
  }

 private:
  std::shared_ptr<push_plugin> m_hub;
  crypto::public_key m_publisher;
};

}  // namespace

std::shared_ptr<lt::torrent_plugin> push_plugin::new_torrent(lt::torrent_handle const&, lt::client_data_t userdata) {
  auto* tag = userdata.get<publisher_tag>();
  if (!tag) return {};
  return std::make_shared<push_torrent>(shared_from_this(), tag->key);
}

peer_ref push_plugin::attach(std::shared_ptr<push_peer> const& peer) {
  auto ref = m_next++;
  m_peers[ref] = peer;
  ++counters.peers;
  return ref;
}

void push_plugin::detach(peer_ref ref) {
  if (m_peers.erase(ref)) --counters.peers;
}

void push_plugin::send(peer_ref to, std::string const& payload) {
  auto it = m_peers.find(to);
  if (it == m_peers.end()) return;
  if (auto p = it->second.lock()) p->send(payload);
}

void push_plugin::send_all(crypto::public_key const& publisher, std::string const& payload, peer_ref except) {
  // Not back to the node it came from, on any of its connections.
  std::optional<lt::peer_id> source;
  if (auto it = m_peers.find(except); it != m_peers.end())
    if (auto p = it->second.lock()) source = p->pid();
  // A node connected through several versions gets it on each connection: one of them may be
  // closing (a version retired, or re-added after placing files) and take a queued message with
  // it. The copies cost the receiver a lookup; only the first is forwarded further.
  for (auto const& [ref, weak] : m_peers) {
    auto p = weak.lock();
    if (!p || ref == except || p->disconnecting() || !(p->publisher() == publisher)) continue;
    if (source && p->pid() == *source) continue;
    p->send(payload);
  }
}

void push_plugin::drop(peer_ref who) {
  auto it = m_peers.find(who);
  if (it == m_peers.end()) return;
  if (auto p = it->second.lock()) {
    ++counters.dropped_bad;
    p->disconnect();
  }
}

}  // namespace outlast::net::detail
