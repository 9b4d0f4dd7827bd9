// outlast::net::session: the node's libtorrent session (swarm and Mainline DHT), configured
// from session_config, with DHT state restored at start and saved on demand.
//
// Thread: construct, call and destroy it on the node thread that runs `ioc`; libtorrent's alerts
// are carried to that thread by posting to `ioc`. libtorrent runs its own threads inside.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/records.hpp"
#include "crypto/result.hpp"
#include "net/push.hpp"
#include "net/torrents.hpp"

namespace outlast::net {

struct session_config {
  // IP:PORT literals (IPv6 in brackets). Port 0 lets the system pick.
  std::vector<std::string> listen{"0.0.0.0:6881", "[::]:6881"};
  // HOST:PORT DHT routers; empty means none at all (tests). Defaults to public routers.
  std::vector<std::string> bootstrap{"dht.libtorrent.org:25401", "router.bittorrent.com:6881",
                                     "router.utorrent.com:6881", "dht.transmissionbt.com:6881"};
  std::vector<std::string> peers;  // static HOST:PORT peers for every swarm
  bool upnp = true;
  bool natpmp = true;
  bool lsd = true;
  // Lifts libtorrent's one-node-per-IP rules so many nodes on 127.0.0.1 can find each other.
  bool local_swarm = false;
  int upload_rate_limit = 0;    // bytes/s, 0: unlimited
  int download_rate_limit = 0;  // bytes/s, 0: unlimited
  // The push path (net/push.hpp): signed records travel over peer connections as soon as they
  // are accepted. Off: the DHT alone carries them.
  bool push = true;
};

// One site version as a torrent in the session.
struct version_spec {
  info_hash2 ih2{};
  std::filesystem::path save_path;
  std::string torrent;  // a .torrent, when known (the publisher's own)
  std::string resume;   // resume data from an earlier run, when known (holds the metadata too)
  bool seed = false;    // the files were just hashed by us: skip checking them
  // The previous complete version: its files with the same merkle root are placed (hard links)
  // before the new version is checked, so they are not transferred again.
  std::string reuse_resume;
  std::filesystem::path reuse_path;
  std::int64_t max_size = std::int64_t(1) << 40;  // refuse metadata describing more bytes
  // Set on a publisher's beacon torrent only (node/push.cpp): its connections carry that
  // publisher's records (push) and stay open between seeds. A version's connections close once
  // both ends are seeds, as in any BitTorrent client, so 1,000 versions shared by two mirrors do
  // not hold 1,000 idle connections between them.
  std::optional<crypto::public_key> push_publisher;
  // Rate limits of this version's swarm in bytes per second (a site's own limits, `follow
  // --max-upload-rate`); 0: none but the node's.
  int upload_limit = 0;
  int download_limit = 0;
  // Seed only, never write to the files: a version published with --no-copy, whose files are
  // the publisher's own. A file changed since fails libtorrent's check before it is uploaded
  // (seed mode) and is then neither served nor fetched back over the publisher's edit.
  bool no_download = false;
};

// One connection that speaks push. Never reused within a session.
using peer_ref = std::uint64_t;

struct torrent_state {
  bool has_metadata = false;
  bool complete = false;
  bool checking = false;
  double progress = 0;           // 0..1 of the version
  std::int64_t total_done = 0;   // verified bytes on disk
  std::int64_t total_wanted = 0;
  std::int64_t payload_down = 0;  // bytes received from peers since added to this session
  std::int64_t payload_up = 0;
  std::int64_t reused = 0;        // bytes placed from the previous version
  int peers = 0;
};

// What the session reports to its owner, on the node thread.
struct session_events {
  std::function<void(crypto::signed_item const&)> item;  // a mutable item from the DHT, not yet verified
  std::function<void(info_hash2 const&)> finished;       // every piece present and verified
  std::function<void(info_hash2 const&, int file)> file_completed;  // one file of a version verified on disk
  std::function<void(info_hash2 const&, std::string const&)> failed;  // refused metadata, fatal file error
  std::function<void(info_hash2 const&, std::string const&)> resume_data;
  std::function<void()> dht_ready;  // the DHT has nodes (first time)
  // A peer in a swarm of `publisher` speaks push: tell it what we hold (push_send a "have").
  std::function<void(peer_ref, crypto::public_key const& publisher, std::string const& who)> push_hello;
  // A push message from that peer, bounded, rate-limited and decoded; records not yet verified.
  std::function<void(peer_ref, crypto::public_key const& publisher, std::string const& who, push_message const&)> push_message;
};

struct push_stats {
  std::int64_t peers = 0;         // connections speaking push now
  std::int64_t received = 0;      // messages received
  std::int64_t sent = 0;          // messages sent
  std::int64_t dropped_rate = 0;  // dropped unread: over a peer's rate limit
  std::int64_t dropped_bad = 0;   // oversized, malformed or forged: the peer was disconnected
};

// Small files sent or taken whole (net/detail/small_files.hpp), since start.
struct small_file_stats {
  std::int64_t served = 0;        // files sent to peers
  std::int64_t bytes_served = 0;  // their bytes (not in libtorrent's upload counters)
  std::int64_t refused = 0;       // peers' requests answered with no file
  std::int64_t received = 0;      // files that came from peers (before the check against the torrent)
};

// Errors: invalid_argument naming the bad entry.
status validate_endpoint(std::string const& text, bool require_ip_literal);

struct session_stats {
  std::vector<std::string> listen;  // endpoints actually bound (TCP), e.g. "127.0.0.1:40123"
  std::int64_t dht_nodes = 0;
  std::int64_t peers = 0;
  std::int64_t payload_down = 0;  // bytes since start
  std::int64_t payload_up = 0;
  std::int64_t failed_bytes = 0;  // received data that failed its hash check (thrown away)
  std::int64_t banned_peers = 0;  // peers banned for sending it
  bool dht_running = false;
};

class session {
 public:
  using log_fn = std::function<void(std::string const& level, std::string const& message)>;

  // Starts the session. `saved_state` is what save_state() returned in an earlier run, if any;
  // a damaged state is logged and ignored (the DHT starts afresh).
  // Errors: invalid_argument (config), io_error (libtorrent refused to start).
  static result<std::unique_ptr<session>> start(boost::asio::io_context& ioc, session_config const& cfg,
                                                std::optional<std::string> saved_state, log_fn log);
  ~session();  // stops the session if stop() was not called; may block for a few seconds

  void set_events(session_events ev);

  // Adds a version to the swarm: seeds it, or fetches its metadata and data from peers.
  // Errors: invalid_argument (damaged torrent or resume data), io_error.
  status add_version(version_spec const& spec);
  void remove_version(info_hash2 const& ih2, bool delete_files);
  // Files of a version that libtorrent has verified, by torrent file number; empty before its
  // metadata is known. One call to libtorrent's thread.
  std::vector<bool> verified_files(info_hash2 const& ih2) const;
  // Fetches this file of a version before the rest: a reader is waiting for it.
  void want_file(info_hash2 const& ih2, int file);
  // Changes a version's rate limits (bytes per second, 0: none) while it runs.
  void set_rate_limits(info_hash2 const& ih2, int upload, int download);
  std::optional<torrent_state> version_state(info_hash2 const& ih2) const;
  // Every version in the swarm, read in one call to libtorrent (a node with 1,000 sites would
  // otherwise wait on libtorrent's thread 1,000 times).
  std::map<info_hash2, torrent_state> version_states() const;
  // The version's .torrent with its piece layers, once its metadata is known. Costly: libtorrent
  // builds the layers on its network thread (~1.5 s for 5,201 files), stalling every transfer;
  // a complete version's comes from its resume data instead (torrent_from_resume).
  // Errors: not_found, unavailable.
  result<std::string> torrent_file(info_hash2 const& ih2) const;
  // The version's metadata alone, as a .torrent without piece layers: enough to list its files.
  // Cheap. Errors: not_found, unavailable (not known yet).
  result<std::string> metadata(info_hash2 const& ih2) const;
  // Asks every torrent with unsaved changes for resume data (reported through resume_data).
  void save_resume_data();
  // Handles alerts on this thread until every resume-data request is answered or `timeout`
  // passes. For shutdown, when the io_context is about to stop.
  void drain_alerts(std::chrono::milliseconds timeout);

  // BEP 44: put a signed item we hold (anyone's; no key needed) / look one up.
  void put_item(crypto::signed_item const& item);
  void get_item(crypto::public_key const& key, std::string const& salt);

  // Push (no-ops when the config turned it off). Sends happen on libtorrent's thread, soon.
  void push_send(peer_ref to, std::vector<std::string> payloads);
  // A record to every node connected in a swarm of its publisher, once per node, except the
  // node behind `except` (0: none).
  void push_record(crypto::signed_item const& item, peer_ref except);
  void push_drop(peer_ref who, std::string reason);  // disconnects it
  push_stats push_counters() const;
  small_file_stats small_file_counters() const;

  session_stats stats() const;  // refreshed about once a second
  std::string save_state() const;  // DHT node id and routing table, settings
  std::string dht_node_id() const;  // hex; empty until the DHT runs
  void stop();  // closes connections and waits for libtorrent to wind down

  struct impl;

 private:
  explicit session(std::shared_ptr<impl> p);
  std::shared_ptr<impl> m_impl;
};

}  // namespace outlast::net
