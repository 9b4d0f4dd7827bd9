#include "net/detail/fetch_gate.hpp"

#include <libtorrent/error_code.hpp>
#include <libtorrent/peer_connection_handle.hpp>
#include <libtorrent/torrent_status.hpp>

namespace outlast::net::detail {

namespace {

// What a torrent's peer plugins need of it (network thread only).
struct torrent_side {
  bool fetch = false;     // added without metadata: gated until checked, then downloading
  bool complete = false;  // finished or seeding
};

class gate_peer final : public lt::peer_plugin {
 public:
  gate_peer(lt::peer_connection_handle pc, std::shared_ptr<torrent_side const> side) : m_pc(std::move(pc)), m_side(std::move(side)) {}

  bool can_disconnect(lt::error_code const& ec) override {
    if (ec != lt::errors::upload_upload_connection && ec != lt::errors::uninteresting_upload_peer) return true;
    // A fetch is upload-only (upload mode) while its metadata is checked, and not yet interested
    // for a moment after: the seed it is talking to is the one it needs.
    if (m_side->fetch && !m_side->complete) return false;
    // A peer upload-only with pieces missing is such a fetch, on the other end.
    return m_pc.is_seed();
  }

 private:
  lt::peer_connection_handle m_pc;
  std::shared_ptr<torrent_side const> m_side;
};

class gate_torrent final : public lt::torrent_plugin {
 public:
  explicit gate_torrent(bool fetch) : m_side(std::make_shared<torrent_side>()) { m_side->fetch = fetch; }

  std::shared_ptr<lt::peer_plugin> new_connection(lt::peer_connection_handle const& pc) override {
    if (pc.type() != lt::connection_type::bittorrent) return {};
    return std::make_shared<gate_peer>(pc, m_side);
  }

  void on_state(lt::torrent_status::state_t s) override {
    m_side->complete = s == lt::torrent_status::finished || s == lt::torrent_status::seeding;
  }

 private:
  std::shared_ptr<torrent_side> m_side;
};

}  // namespace

std::shared_ptr<lt::torrent_plugin> fetch_gate_plugin::new_torrent(lt::torrent_handle const&, lt::client_data_t userdata) {
  // Every torrent: the seeding side's rule applies to all of them, the fetch's to fetches.
  return std::make_shared<gate_torrent>(userdata.get<fetch_gate>() != nullptr);
}

}  // namespace outlast::net::detail
