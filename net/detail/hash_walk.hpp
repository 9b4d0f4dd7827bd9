// Spares libtorrent 2.0.8 a walk of every file of a version for each block a seed sends.
//
// After every block a peer sends (and every HAVE), libtorrent asks its v2 hash picker whether to
// request piece hashes from that peer (`maybe_send_hash_request`), and the picker answers by
// walking every file of the torrent, 10,402 entries for the standard site with its pad files:
// about 600 million steps for one fetch of it, a third of the fetching node's CPU
// (docs/performance.md). The walk can only find something while a piece layer is missing. Once
// the session has seen that a version holds every piece hash of its files of more than one piece
// (`piece_layers_complete`, from `torrent_handle::piece_layers()`), this plugin takes each of
// its connections to a seed off the v2 hash exchange: it clears libtorrent's own record that the
// peer speaks it (`torrent_peer::protocol_v2`, the first thing that function checks), and sets it
// again when the connection closes, before libtorrent could use it to greet the peer again (the
// record also chooses the info-hash of a handshake). A seed never asks for hashes, so the
// exchange is not needed on that connection; a peer still fetching might, so its connection
// keeps it. When a piece fails its check, libtorrent asks for block hashes to find the peer that
// sent the bad block: the session then says so (`hashes_known(h, false)`) and every connection
// of that version gets the exchange back, for good.
//
// libtorrent offers no setting for this, so the plugin writes a field of an internal structure
// whose layout comes from the installed headers. It checks that layout on each connection first
// (the record must point back at the connection, and say the peer speaks v2, as every peer of a
// v2-only torrent does), and leaves a connection alone when it does not hold.
//
// Threads: libtorrent calls the plugin on its network thread; `hashes_known` must be called
// there too.
#pragma once

#include <libtorrent/extensions.hpp>
#include <libtorrent/sha256.hpp>
#include <libtorrent/torrent_handle.hpp>
#include <libtorrent/torrent_info.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace outlast::net::detail {

// Whether `layers` (as torrent_handle::piece_layers() returns them) holds every piece hash of
// each of `ti`'s files of more than one piece. Files of one piece need none: their root is their
// piece hash.
bool piece_layers_complete(lt::torrent_info const& ti, std::vector<std::vector<lt::sha256_hash>> const& layers);

struct hash_walk_counters {
  std::int64_t spared = 0;  // connections taken off the hash exchange
  std::int64_t unsure = 0;  // connections left alone: the layout check did not hold
};

class walk_torrent;

class hash_walk_plugin final : public lt::plugin {
 public:
  std::shared_ptr<lt::torrent_plugin> new_torrent(lt::torrent_handle const& h, lt::client_data_t) override;

  // Version `h` holds every piece hash it needs (`known`), or seems stuck without (not `known`).
  void hashes_known(lt::torrent_handle const& h, bool known);

  hash_walk_counters counters;

 private:
  std::map<lt::torrent_handle, std::weak_ptr<walk_torrent>> m_torrents;
};

}  // namespace outlast::net::detail
