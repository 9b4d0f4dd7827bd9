// Keeps a fetch's connections through the check of its metadata.
//
// A version added without metadata stays in libtorrent's upload mode until the node has checked
// the metadata a peer sent (net/session.cpp, on_metadata): nothing is requested before then. But
// in upload mode with metadata the torrent is "upload-only", and libtorrent closes a connection
// between two upload-only ends as redundant, on both sides, the moment the metadata arrives (and
// a seed that is "uninteresting" for the moment the fetch takes to become interested); it then
// waits a minute before trying that peer again. Measured on loopback: every small-site fetch
// lost 0.8 s to 5 s to it. This plugin vetoes exactly that closing: on the fetching side until
// the version is complete, and on the seeding side for a peer that says it is upload-only yet
// lacks pieces (a node checking metadata, not a seed).
//
// Threads: libtorrent calls the plugin on its network thread.
#pragma once

#include <libtorrent/extensions.hpp>

namespace outlast::net::detail {

// add_torrent_params::userdata of a version added without metadata (a fetch). Owned by the
// session and never freed while it runs.
struct fetch_gate {};

class fetch_gate_plugin final : public lt::plugin {
 public:
  std::shared_ptr<lt::torrent_plugin> new_torrent(lt::torrent_handle const&, lt::client_data_t userdata) override;
};

}  // namespace outlast::net::detail
