#include "net/detail/hash_walk.hpp"

#include <libtorrent/bt_peer_connection.hpp>
#include <libtorrent/peer_connection_handle.hpp>
#include <libtorrent/torrent_peer.hpp>

#include <algorithm>

namespace outlast::net::detail {

bool piece_layers_complete(lt::torrent_info const& ti, std::vector<std::vector<lt::sha256_hash>> const& layers) {
  auto const& files = ti.files();
  if (static_cast<int>(layers.size()) != files.num_files()) return false;
  for (auto f : files.file_range()) {
    if (files.pad_file_at(f) || files.file_size(f) <= files.piece_length()) continue;
    auto const& layer = layers[static_cast<std::size_t>(static_cast<int>(f))];
    if (static_cast<int>(layer.size()) != files.file_num_pieces(f)) return false;
    if (std::any_of(layer.begin(), layer.end(), [](lt::sha256_hash const& h) { return h.is_all_zeros(); })) return false;
  }
  return true;
}

namespace {

// libtorrent's record of the peer on connection `pc`, if it has the layout these headers give it:
// it points back at the connection.
lt::torrent_peer* record_of(lt::bt_peer_connection_handle const& pc) {
  auto native = pc.native_handle();
  if (!native) return nullptr;
  lt::torrent_peer* record = native->peer_info_struct();
  if (!record || record->connection != static_cast<lt::peer_connection_interface*>(native.get())) return nullptr;
  return record;
}

}  // namespace

class walk_peer final : public lt::peer_plugin {
 public:
  walk_peer(lt::bt_peer_connection_handle pc, std::shared_ptr<bool const> known, hash_walk_counters& counters)
      : m_pc(std::move(pc)), m_known(std::move(known)), m_counters(counters) {}

  // Per block received: the moment the walk would come.
  bool on_piece(lt::peer_request const&, lt::span<char const>) override {
    if (!m_off && !m_tried && *m_known && m_pc.is_seed()) take_off();
    return false;
  }

  void on_disconnect(lt::error_code const&) override { put_back(); }

  // The connection closes, or its version's seeds get the exchange back: the record says v2
  // again. Found again rather than kept: libtorrent may have moved the connection to another
  // record of the same peer meanwhile (and freed this one). It still points at the connection
  // here, on_disconnect included (libtorrent calls plugins before it lets go of the record).
  void put_back() {
    if (!m_off) return;
    m_off = false;
    m_tried = false;
    if (auto* record = record_of(m_pc)) record->protocol_v2 = true;
  }

 private:
  void take_off() {
    m_tried = true;  // once a connection, unless put back
    auto* record = record_of(m_pc);
    if (!record || !record->protocol_v2) {
      ++m_counters.unsure;
      return;
    }
    record->protocol_v2 = false;
    m_off = true;
    ++m_counters.spared;
  }

  lt::bt_peer_connection_handle m_pc;
  std::shared_ptr<bool const> m_known;
  hash_walk_counters& m_counters;  // the plugin's, which outlives its torrents and connections
  bool m_off = false;    // its record cleared, while the connection lasts
  bool m_tried = false;  // tried once (not again unless put back)
};

class walk_torrent final : public lt::torrent_plugin {
 public:
  explicit walk_torrent(hash_walk_counters& counters) : m_counters(counters) {}

  std::shared_ptr<lt::peer_plugin> new_connection(lt::peer_connection_handle const& pc) override {
    if (pc.type() != lt::connection_type::bittorrent) return {};
    auto p = std::make_shared<walk_peer>(lt::bt_peer_connection_handle(pc), m_known, m_counters);
    std::erase_if(m_peers, [](auto const& w) { return w.expired(); });
    m_peers.push_back(p);
    return p;
  }

  void set_known(bool known) {
    *m_known = known;
    if (known) return;
    for (auto const& w : m_peers)
      if (auto p = w.lock()) p->put_back();
  }

 private:
  hash_walk_counters& m_counters;
  std::shared_ptr<bool> m_known = std::make_shared<bool>(false);
  std::vector<std::weak_ptr<walk_peer>> m_peers;
};

std::shared_ptr<lt::torrent_plugin> hash_walk_plugin::new_torrent(lt::torrent_handle const& h, lt::client_data_t) {
  std::erase_if(m_torrents, [](auto const& kv) { return kv.second.expired(); });
  auto t = std::make_shared<walk_torrent>(counters);
  m_torrents[h] = t;
  return t;
}

void hash_walk_plugin::hashes_known(lt::torrent_handle const& h, bool known) {
  auto it = m_torrents.find(h);
  if (it == m_torrents.end()) return;
  if (auto t = it->second.lock()) t->set_known(known);
}

}  // namespace outlast::net::detail
