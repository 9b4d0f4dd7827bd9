// The node's state and its parts, shared by node.cpp (life cycle, control API) and sites.cpp
// (publishing, following, mirroring). Everything here runs on the node thread, except the
// blocking jobs run on `workers`, which touch only their own job state and post results back.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>

#include "net/gateway.hpp"
#include "net/local_http.hpp"
#include "net/session.hpp"
#include "node/bundle.hpp"
#include "node/config.hpp"
#include "node/home.hpp"
#include "node/log.hpp"
#include "node/node.hpp"
#include "storage/store.hpp"

namespace outlast::node {

using json = nlohmann::json;

struct site_id {
  crypto::public_key key;
  std::string site;
  auto operator<=>(site_id const&) const = default;
  std::string address() const { return key.to_text() + "/" + site; }
};

// Errors: invalid_argument naming what is wrong with the address.
result<site_id> parse_address(std::string_view text);

// Blob spaces of the store: libtorrent resume data by info-hash (hex), and the signed pointer
// that named each held version, by "KEY/SITE/SEQ" (export --all carries older versions with it).
inline constexpr std::string_view resume_space = "resume";
inline constexpr std::string_view pointer_space = "pointers";
inline std::string pointer_id(site_id const& s, std::int64_t seq) { return s.address() + "/" + std::to_string(seq); }
// What a site's last copied version was made of, by "KEY/SITE": the version and, per file path,
// the source's size, mtime and ctime (ns), inode and device when it was copied. A publish links
// the files that still match from that version instead of copying them (publish_reuse).
inline constexpr std::string_view publish_files_space = "publish-files";

// Progress of a publish, read by the CLI while it waits (GET /v1/jobs/ID). Guarded by its mutex
// because the worker thread writes it.
struct publish_job {
  std::mutex mutex;
  std::string phase = "scanning";
  std::int64_t done = 0, total = 0;
};

// What the store holds about one site, read in one transaction.
struct site_snapshot {
  std::optional<storage::site_record> record;
  std::vector<storage::version_record> versions;  // by seq
  std::optional<crypto::signed_item> pointer;     // the newest signed pointer held
  // Per-site policy (settings "pins:ADDRESS", "max-size:ADDRESS"), read in the same transaction.
  std::set<std::int64_t> pins;
  std::optional<std::int64_t> max_size;  // bytes, when set with follow --max-size
  // kB/s per version swarm of the site, set with follow --max-upload-rate/--max-download-rate; 0: none.
  int upload_kbps = 0;
  int download_kbps = 0;
};

// Why `size` more bytes cannot go on the disk holding `home` (keeping room for the store), if
// they cannot. `what` names them in the message.
std::optional<std::string> disk_refusal(std::filesystem::path const& home, std::int64_t size, std::string const& what);

// Fills `snap.pins` and `snap.max_size` for the site at `address`.
void read_site_policy(storage::txn& t, std::string const& address, site_snapshot& snap);
// Stores the pinned versions of the site at `address` (none: the setting goes).
status write_pins(storage::txn& t, std::string const& address, std::set<std::int64_t> const& pins);

// Every site with its snapshot, read once for the status, the site list and the gateway view.
using site_table = std::vector<std::pair<storage::site_record, site_snapshot>>;

// A version being fetched.
struct fetch {
  site_id site;
  std::int64_t seq = 0;
  net::info_hash2 ih2{};
};

struct node::impl {
  node_config cfg;
  logger& log;
  home_lock lock;
  std::unique_ptr<storage::store> store;
  boost::asio::io_context ioc{1};
  boost::asio::signal_set signals{ioc, SIGINT, SIGTERM};
  boost::asio::steady_timer save_timer{ioc}, poll_timer{ioc}, republish_timer{ioc}, resume_timer{ioc}, view_timer{ioc};
  boost::asio::thread_pool workers{1};
  std::atomic<bool> cancel_jobs{false};
  std::unique_ptr<net::session> session;
  std::unique_ptr<net::local_http_server> control;
  std::unique_ptr<net::gateway> gateway;
  std::map<net::info_hash2, std::shared_ptr<net::file_index const>> file_indexes;  // per version the gateway serves
  // Browse while syncing: which files of a version being fetched are verified, for sites with no
  // complete version yet (shared with the gateway's view; set as files complete).
  std::map<net::info_hash2, std::shared_ptr<net::file_readiness>> syncing_files;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::mt19937 rng{std::random_device{}()};
  bool stopping = false;

  std::map<std::string, std::shared_ptr<publish_job>> jobs;  // by job id
  std::map<site_id, bool> publishing;                        // sites with a publish under way
  std::map<net::info_hash2, fetch> fetching;                 // versions being downloaded (at most max-fetches)
  // Newer versions waiting for a fetch slot, oldest wish first; the newest pointer per site.
  std::deque<site_id> fetch_queue;
  std::map<site_id, std::pair<std::int64_t, crypto::pointer>> queued_fetches;
  std::map<net::info_hash2, site_id> seeding;                // complete versions in the swarm
  std::map<net::info_hash2, std::string> torrents_due;        // finished versions: where their .torrent goes once resume data comes
  std::map<site_id, std::string> site_errors;                // last problem per site, for `sites`
  // Followed sites whose pointer was not found yet: asked again at growing intervals (2 s, 4 s,
  // ... up to poll-interval) instead of waiting a whole poll-interval after a miss.
  std::map<site_id, std::pair<std::chrono::steady_clock::time_point, std::chrono::seconds>> lookups;
  std::int64_t refused_invalid = 0;                          // records refused for bounds or signature
  std::string last_refusal;
  // When and how the newest record of each (key, salt) first reached this node in this run.
  struct arrival {
    std::int64_t seq = 0;
    std::int64_t unix_ms = 0;
    std::string via;  // "local", "DHT", "push from IP:PORT", "control API"
  };
  std::map<std::pair<crypto::public_key, std::string>, arrival> arrivals;
  struct token_bucket {
    double tokens = -1;  // -1: never used (starts full)
    std::chrono::steady_clock::time_point last{};
    std::map<std::string, std::pair<crypto::signed_item, net::peer_ref>> waiting;  // by salt: newest over the limit
  };
  boost::asio::steady_timer forward_timer{ioc};
  bool forward_flush_pending = false;
  std::map<crypto::public_key, token_bucket> publisher_buckets;  // push forwarding, per publisher
  std::map<net::peer_ref, std::deque<std::string>> answer_backlog;  // rest of a long "have" answer
  std::chrono::steady_clock::time_point last_view_refresh{}, last_node_page{};
  std::int64_t node_page_hits = 0;
  bool heap_grew = false;  // versions were fetched since the heap was last trimmed
  std::int64_t over_quota = 0;                                  // versions refused for quota
  std::int64_t push_held_back = 0;                              // records not forwarded for rate
  std::map<crypto::public_key, net::info_hash2> beacons;        // publishers whose beacon we seed

  impl(node_config c, logger& l, home_lock hl) : cfg(std::move(c)), log(l), lock(std::move(hl)) {}

  // node.cpp
  status register_keys();
  void save_state();
  void schedule_save();
  void wait_for_signal();
  void begin_stop();
  json status_json(site_table const& sites);
  json status_json() { return status_json(load_site_table()); }
  void handle(net::http_request const& req, net::local_http_server::responder respond);

  // sites.cpp
  std::filesystem::path version_dir(site_id const& s, std::int64_t seq) const;
  // A version published with --no-copy: its folder holds a symlink to the publisher's directory.
  bool published_in_place(site_id const& s, std::int64_t seq) const;
  site_snapshot load_site(site_id const& s) const;
  std::vector<storage::site_record> load_sites() const;
  site_table load_site_table() const;
  // Takes a site's versions out of the swarm: the seeded ones (files kept) and, with
  // `fetches_too`, the ones being fetched (files deleted).
  void retire_versions(site_id const& s, bool fetches_too);
  status start_sites();  // re-adds held versions at start-up
  void on_dht_ready();
  void poll_followed();
  void schedule_poll();
  void retry_lookups();
  void republish();
  void schedule_republish();
  void schedule_resume_save();
  // The one way a signed record from outside enters the node: store rule, then act on it.
  // `from`: the push connection it came by (not sent back there), 0 for none.
  result<storage::record_outcome> accept_record(crypto::signed_item const& item, std::string const& source, net::peer_ref from = 0);
  // Fetches the version a pointer names if it is newer than what is held: at once while fewer than
  // max-fetches run, else in turn (start_queued_fetches).
  void consider_pointer(site_id const& s, std::int64_t seq, crypto::pointer const& p);
  void start_fetch(site_id const& s, site_snapshot const& snap, std::int64_t seq, crypto::pointer const& p);
  // A new version `seq` of `s` with the content (info-hash) of an older version held here: a
  // revert. libtorrent holds one torrent per info-hash, so the older version gives way: out of
  // the swarm, its record and pointer dropped, and its files handed to the new version's folder
  // (`hand_over`: a fetch then has nothing to download) or deleted.
  void retire_same_content(site_id const& s, net::info_hash2 const& ih2, std::int64_t seq, bool hand_over);
  void start_queued_fetches();
  void drop_queued_fetch(site_id const& s);
  void on_version_finished(net::info_hash2 const& ih2);
  // For a copy publish: marks the files unchanged since the last copied version (see
  // publish_files_space) to be linked from it (source_file::reuse), and returns what to remember
  // of this one. Worker.
  json publish_reuse(site_id const& s, std::optional<std::pair<std::int64_t, json>> const& last, std::filesystem::path const& staging,
                     std::vector<net::source_file>& files);
  void keep_torrent(net::info_hash2 const& ih2, std::string const& path, std::string const& resume);
  void on_version_failed(net::info_hash2 const& ih2, std::string const& message);
  std::int64_t prune_versions(site_id const& s);  // bytes freed
  // A held version out of the swarm: seeded (files kept) or being fetched (its files deleted).
  void leave_swarm(net::info_hash2 const& ih2);

  // quota.cpp
  std::int64_t site_limit(site_snapshot const& snap) const;  // bytes; 0: none
  // The site's own rate limits onto a version about to join the swarm.
  static void apply_site_rates(site_snapshot const& snap, net::version_spec& spec);
  // Why a version of this size may not be fetched, if it may not.
  std::optional<std::string> quota_refusal(site_id const& s, site_snapshot const& snap, std::int64_t seq, std::int64_t size);
  std::int64_t collect_garbage();  // bytes freed
  net::http_response pin(json const& req, bool on);
  void publish(json const& req, net::local_http_server::responder respond);
  void finish_publish(site_id s, std::int64_t seq, std::shared_ptr<crypto::key_pair> kp, net::built_torrent built,
                      bool force, std::vector<std::string> notes, json files_now, std::int64_t linked,
                      net::local_http_server::responder respond);
  net::http_response follow(json const& req);
  net::http_response unfollow(json const& req);
  json sites_json(site_table const& sites);
  json sites_json() { return sites_json(load_site_table()); }

  // notices.cpp
  net::http_response post_notice(json const& req);
  json notices_json(std::optional<crypto::public_key> const& key, bool include_expired);
  std::set<crypto::public_key> notice_keys();

  // bundles.cpp
  void export_bundle(json const& req, net::local_http_server::responder respond);
  void import_bundle(json const& req, net::local_http_server::responder respond);
  // One version of a bundle, its files verified in `dir` (a staging directory).
  struct staged_version {
    bundle_manifest m;
    crypto::pointer p;
    std::filesystem::path dir;
  };
  net::http_response finish_import(std::vector<staged_version> const& versions);

  // push.cpp
  // Seeds the publisher's beacon (net::make_beacon) while this node holds any of its sites, so
  // the publisher's nodes stay connected whatever versions they hold; drops it after the last.
  void ensure_beacon(crypto::public_key const& key);
  void drop_beacon_if_unused(crypto::public_key const& key);
  bool is_beacon(net::info_hash2 const& ih2) const;
  void note_arrival(crypto::signed_item const& item, std::string const& via);
  void forward(crypto::signed_item const& item, net::peer_ref except);  // to peers, rate-limited per publisher
  void schedule_forward_flush();
  void on_push_hello(net::peer_ref ref, crypto::public_key const& publisher, std::string const& who);
  void on_push_message(net::peer_ref ref, crypto::public_key const& publisher, std::string const& who, net::push_message const& msg);
  json records_json(crypto::public_key const& key);
  json push_json();

  // gateway.cpp (node side): the snapshot the gateway serves, rebuilt every second and whenever
  // a version completes.
  void refresh_view();
  void schedule_view();
  bool view_wanted();  // whether the 1-second tick should refresh the view
  std::shared_ptr<net::file_index const> index_of(site_id const& s, storage::version_record const& v);
  // Keeps a version's file index for the gateway, if it is one it may serve.
  std::shared_ptr<net::file_index const> keep_index(net::info_hash2 const& ih2, result<net::file_index> idx, std::string const& what);
  // A version as the gateway serves it, from its file index.
  net::served_site served_version(site_id const& s, std::int64_t seq, net::file_index const& idx) const;
  // The gateway's entry for the version a site with no complete version is fetching, once its
  // metadata is known: only its verified files are served.
  std::optional<net::served_site> syncing_site(fetch const& f);
};

json notice_json(crypto::signed_item const& item);
std::int64_t now_unix();
net::http_response json_response(int status, json const& body);
net::http_response json_error(int status, std::string message);

}  // namespace outlast::node
