#include "net/session.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/bencode.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/read_resume_data.hpp>
#include <libtorrent/torrent_handle.hpp>
#include <libtorrent/torrent_status.hpp>
#include <libtorrent/write_resume_data.hpp>
#include <libtorrent/hex.hpp>
#include <libtorrent/ip_filter.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/session_params.hpp>
#include <libtorrent/session_stats.hpp>
#include <libtorrent/settings_pack.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "net/detail/fetch_gate.hpp"
#include "net/detail/push_plugin.hpp"
#include "net/detail/small_files.hpp"
#include "net/detail/torrent_checks.hpp"

namespace outlast::net {

namespace {

// "1.2.3.4:80" or "[::1]:80", as `listen` shows endpoints.
std::string endpoint_text(boost::asio::ip::address const& address, int port) {
  std::ostringstream ep;
  if (address.is_v6()) ep << '[' << address.to_string() << "]:" << port;
  else ep << address.to_string() << ':' << port;
  return ep.str();
}

// Our 0 ("none") as libtorrent's "unlimited".
int lt_rate(int bytes_per_s) { return bytes_per_s > 0 ? bytes_per_s : -1; }

struct host_port {
  std::string host;
  int port = 0;
};

result<host_port> split_endpoint(std::string const& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return make_error(errc::invalid_argument, "'" + text + "' is not HOST:PORT");
  host_port hp;
  hp.host = text.substr(0, colon);
  if (hp.host.front() == '[') {
    if (hp.host.back() != ']') return make_error(errc::invalid_argument, "'" + text + "': unclosed '[' in IPv6 address");
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  auto port_text = text.substr(colon + 1);
  if (port_text.find_first_not_of("0123456789") != std::string::npos || port_text.size() > 5)
    return make_error(errc::invalid_argument, "'" + text + "': port must be a number from 0 to 65535");
  hp.port = std::stoi(port_text);
  if (hp.port > 65535) return make_error(errc::invalid_argument, "'" + text + "': port must be a number from 0 to 65535");
  return hp;
}

// A handle becomes invalid the moment its torrent is removed (a version retired, or taken out to
// place files); libtorrent then throws from status(). Every status query goes through here.
std::optional<lt::torrent_status> status_of(lt::torrent_handle const& h) {
  if (!h.is_valid()) return std::nullopt;
  try {
    return h.status({});
  } catch (lt::system_error const&) {
    return std::nullopt;
  }
}

std::string join(std::vector<std::string> const& v) {
  std::string out;
  for (auto const& s : v) {
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

}  // namespace

status validate_endpoint(std::string const& text, bool require_ip_literal) {
  auto hp = split_endpoint(text);
  if (!hp) return hp.err();
  if (require_ip_literal) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(hp->host, ec);
    if (ec) return make_error(errc::invalid_argument, "'" + text + "': the address must be an IP literal (e.g. 127.0.0.1:6881 or [::1]:6881)");
  } else if (hp->port == 0) {
    return make_error(errc::invalid_argument, "'" + text + "': port 0 is not a peer's port");
  }
  return {};
}

struct session::impl : std::enable_shared_from_this<impl> {
  boost::asio::io_context& ioc;
  session_config cfg;
  log_fn log;
  std::unique_ptr<lt::session> ses;
  std::optional<lt::dht::dht_state> pending_dht_state;
  bool dht_enabled = false;
  bool bootstrapped = false;
  session_stats cached;
  boost::asio::steady_timer timer;
  int idx_dht_nodes = -1, idx_peers = -1, idx_down = -1, idx_up = -1, idx_failed = -1, idx_banned = -1;
  session_events events;
  bool dht_ready_reported = false;
  std::vector<boost::asio::ip::tcp::endpoint> static_peers;
  std::chrono::steady_clock::time_point last_announce{};
  std::chrono::steady_clock::time_point last_bootstrap{};
  std::chrono::steady_clock::time_point first_bootstrap{};
  int outstanding_resume = 0;

  struct torrent_entry {
    lt::torrent_handle handle;
    version_spec spec;
    std::int64_t reused = 0;
    // Set between taking a torrent out to place files already on disk and adding it back; with
    // the pieces of the files placed from the previous version when they need no check.
    std::shared_ptr<lt::torrent_info> readd;
    lt::typed_bitfield<lt::piece_index_t> readd_have;
    // Peers it had connected to when it was taken out: connected again when it is back, and on
    // its nudges (a reconnection can lose to the old connection the peer has not closed yet).
    std::vector<lt::tcp::endpoint> readd_peers;
    bool readded = false;  // added back after placing files: a first nudge after 1 s, not 5
    bool finished_reported = false;
    // Bytes of small files fetched whole from a peer (net/detail/small_files.hpp): received
    // payload that libtorrent does not count.
    std::int64_t side_down = 0;
    // A new version's metadata handled up to the files placed, taking its small files from a
    // peer (until it has answered them all, or a wait for its next answer times out) before the
    // rest of on_metadata.
    struct small_wait {
      std::uint64_t id = 0;
      std::shared_ptr<lt::torrent_info const> ti;
      detail::placement placed;
      lt::add_torrent_params old;
      std::size_t asked = 0;   // files asked for
      std::size_t taken = 0;   // files that came and were written
      int refused = 0;         // files that came and were not the published bytes
      std::int64_t bytes = 0;  // of the files taken
      std::chrono::steady_clock::time_point deadline;  // the swarm takes over then at the latest
      std::shared_ptr<boost::asio::steady_timer> timeout;
    };
    std::optional<small_wait> waiting_small;
    // A beacon's next own DHT lookup for peers, and the wait after it (see find_beacon_peers).
    std::chrono::steady_clock::time_point next_peer_lookup{};
    std::chrono::seconds peer_lookup_after{30};
    // A fetch that cannot progress: since when (or its last nudge), and the wait before the
    // next (see nudge_stuck_fetches).
    std::optional<std::chrono::steady_clock::time_point> stuck_since;
    std::chrono::seconds nudge_after{5};
  };
  std::map<info_hash2, torrent_entry> torrents;
  static std::int64_t taking_of(torrent_entry const& e) { return e.waiting_small ? e.waiting_small->bytes : 0; }
  std::shared_ptr<detail::push_plugin> push;  // null when push is off
  std::shared_ptr<detail::small_files_plugin> small = std::make_shared<detail::small_files_plugin>();
  std::uint64_t next_small_wait = 1;
  std::map<crypto::public_key, std::unique_ptr<detail::publisher_tag>> publisher_tags;
  detail::fetch_gate fetch_tag;  // userdata of versions added without metadata

  // What add_torrent_params::userdata points at, so the push plugin knows the torrent's publisher.
  lt::client_data_t tag_for(version_spec const& spec) {
    if (!push || !spec.push_publisher) return {};
    auto& tag = publisher_tags[*spec.push_publisher];
    if (!tag) tag = std::make_unique<detail::publisher_tag>(detail::publisher_tag{*spec.push_publisher});
    return lt::client_data_t(tag.get());
  }

  // Runs `f(plugin)` on libtorrent's network thread, where the plugins live; nothing when the
  // session or the plugin is gone (push is off, say).
  template <typename Plugin, typename F>
  void on_network_thread(std::shared_ptr<Plugin> const& plugin, F&& f) {
    if (!ses || !plugin) return;
    boost::asio::post(ses->get_context(), [w = std::weak_ptr<Plugin>(plugin), f = std::forward<F>(f)]() mutable {
      if (auto hub = w.lock()) f(*hub);
    });
  }

  impl(boost::asio::io_context& io, session_config c, log_fn l)
      : ioc(io), cfg(std::move(c)), log(std::move(l)), timer(io) {}

  // Named routers go to dht_bootstrap_nodes, which libtorrent treats as routers (asked, never
  // kept in the routing table). IP-literal entries are peers we know (other mirrors, test nodes):
  // they would be ignored there as routers, so they are added as DHT nodes instead.
  std::vector<std::string> router_hosts() const {
    std::vector<std::string> out;
    for (auto const& b : cfg.bootstrap)
      if (!validate_endpoint(b, true)) out.push_back(b);
    return out;
  }

  bool debug_alerts = std::getenv("OUTLAST_DEBUG_SWARM") != nullptr;

  lt::settings_pack settings(bool enable_dht) const {
    lt::settings_pack p;
    p.set_str(lt::settings_pack::user_agent, "Outlast/0.1.0 libtorrent/" LIBTORRENT_VERSION);
    p.set_str(lt::settings_pack::peer_fingerprint, "-OL0010-");
    p.set_str(lt::settings_pack::listen_interfaces, join(cfg.listen));
    p.set_str(lt::settings_pack::dht_bootstrap_nodes, join(router_hosts()));
    p.set_bool(lt::settings_pack::enable_dht, enable_dht);
    p.set_bool(lt::settings_pack::enable_upnp, cfg.upnp);
    p.set_bool(lt::settings_pack::enable_natpmp, cfg.natpmp);
    p.set_bool(lt::settings_pack::enable_lsd, cfg.lsd);
    // Connections between two seeds of a version are closed; those of a beacon torrent carry
    // push and are kept (the push plugin vetoes their closing: push_peer::can_disconnect).
    p.set_bool(lt::settings_pack::close_redundant_connections, true);
    p.set_int(lt::settings_pack::stop_tracker_timeout, 1);
    // Transfer tuning measured on loopback (shared/libtorrent-notes.md): metadata in ~0.1 s,
    // 144-176 MB/s instead of ~110 with defaults.
    p.set_int(lt::settings_pack::tick_interval, 100);
    p.set_int(lt::settings_pack::aio_threads, 2);
    p.set_int(lt::settings_pack::send_buffer_watermark, 8 << 20);
    p.set_int(lt::settings_pack::max_queued_disk_bytes, 32 << 20);
    p.set_int(lt::settings_pack::max_out_request_queue, 1500);
    p.set_int(lt::settings_pack::send_socket_buffer_size, 4 << 20);
    p.set_int(lt::settings_pack::recv_socket_buffer_size, 4 << 20);
    // A peer cannot make us accept more than this much metadata for one version.
    p.set_int(lt::settings_pack::max_metadata_size, 32 << 20);
    p.set_int(lt::settings_pack::upload_rate_limit, cfg.upload_rate_limit);
    p.set_int(lt::settings_pack::download_rate_limit, cfg.download_rate_limit);
    p.set_int(lt::settings_pack::alert_mask, static_cast<int>(
        lt::alert_category::error | lt::alert_category::status | lt::alert_category::dht | lt::alert_category::dht_operation |
        lt::alert_category::port_mapping | lt::alert_category::storage | lt::alert_category::file_progress |
        (debug_alerts ? lt::alert_category::peer | lt::alert_category::connect : lt::alert_category_t{})));
    if (cfg.local_swarm) {
      p.set_bool(lt::settings_pack::dht_restrict_routing_ips, false);
      p.set_bool(lt::settings_pack::dht_restrict_search_ips, false);
      p.set_int(lt::settings_pack::dht_block_ratelimit, 100000);
      p.set_bool(lt::settings_pack::allow_multiple_connections_per_ip, true);
      // On loopback uTP is much slower than TCP (shared/libtorrent-notes.md), and a killed
      // node's uTP connections linger on the other side (no RST) and block its reconnection.
      p.set_bool(lt::settings_pack::enable_outgoing_utp, false);
    }
    return p;
  }

  void on_alerts() {
    if (!ses) return;
    std::vector<lt::alert*> alerts;
    ses->pop_alerts(&alerts);
    for (lt::alert* a : alerts) handle(a);
  }

  void handle(lt::alert* a) {
    if (auto* l = lt::alert_cast<lt::listen_succeeded_alert>(a)) {
      if (l->socket_type == lt::socket_type_t::tcp) {
        auto ep = endpoint_text(l->address, l->port);
        cached.listen.push_back(ep);
        log("info", "listening on " + ep);
      }
      if (!dht_enabled) enable_dht();
    } else if (auto* f = lt::alert_cast<lt::listen_failed_alert>(a)) {
      log("error", f->message());
    } else if (auto* s = lt::alert_cast<lt::session_stats_alert>(a)) {
      auto counters = s->counters();
      if (idx_dht_nodes >= 0) cached.dht_nodes = counters[static_cast<std::size_t>(idx_dht_nodes)];
      if (idx_peers >= 0) cached.peers = counters[static_cast<std::size_t>(idx_peers)];
      if (idx_down >= 0) cached.payload_down = counters[static_cast<std::size_t>(idx_down)];
      if (idx_up >= 0) cached.payload_up = counters[static_cast<std::size_t>(idx_up)];
      if (idx_failed >= 0) cached.failed_bytes = counters[static_cast<std::size_t>(idx_failed)];
      if (idx_banned >= 0) cached.banned_peers = counters[static_cast<std::size_t>(idx_banned)];
      check_dht_ready();
    } else if (auto* m = lt::alert_cast<lt::dht_mutable_item_alert>(a)) {
      on_item(*m);
    } else if (auto* md = lt::alert_cast<lt::metadata_received_alert>(a)) {
      on_metadata(md->handle);
    } else if (auto* ck = lt::alert_cast<lt::torrent_checked_alert>(a)) {
      if (auto st = status_of(ck->handle); st && st->is_finished) report_finished(ck->handle);
    } else if (auto* rm = lt::alert_cast<lt::torrent_removed_alert>(a)) {
      on_network_thread(small, [h = rm->handle](detail::small_files_plugin& hub) { hub.withdraw(h); });
      on_removed(rm->info_hashes);
    } else if (auto* fc = lt::alert_cast<lt::file_completed_alert>(a)) {
      if (auto* e = entry_of(fc->handle); e && events.file_completed) events.file_completed(e->spec.ih2, static_cast<int>(fc->index));
    } else if (auto* fin = lt::alert_cast<lt::torrent_finished_alert>(a)) {
      report_finished(fin->handle);
    } else if (auto* rd = lt::alert_cast<lt::save_resume_data_alert>(a)) {
      if (outstanding_resume > 0) --outstanding_resume;
      auto buf = lt::write_resume_data_buf(rd->params);
      if (auto* e = entry_of(rd->handle); e && events.resume_data) events.resume_data(e->spec.ih2, std::string(buf.begin(), buf.end()));
    } else if (auto* fe = lt::alert_cast<lt::file_error_alert>(a)) {
      log("error", fe->message());
      if (auto* e = entry_of(fe->handle); e && events.failed) events.failed(e->spec.ih2, fe->message());
    } else if (auto* te = lt::alert_cast<lt::torrent_error_alert>(a)) {
      log("error", te->message());
      if (auto* e = entry_of(te->handle); e && events.failed) events.failed(e->spec.ih2, te->message());
    } else if (auto* hf = lt::alert_cast<lt::hash_failed_alert>(a)) {
      log("warning", hf->message() + " (the sender is banned if it keeps sending bad data)");
    } else if (lt::alert_cast<lt::save_resume_data_failed_alert>(a)) {
      if (outstanding_resume > 0) --outstanding_resume;
    } else if (auto* gp = lt::alert_cast<lt::dht_get_peers_reply_alert>(a)) {
      on_beacon_peers(gp->info_hash, gp->peers());
    } else if (lt::alert_cast<lt::dht_put_alert>(a)) {
      log("debug", a->message());
    } else if (debug_alerts && (lt::alert_cast<lt::peer_connect_alert>(a) || lt::alert_cast<lt::peer_disconnected_alert>(a) ||
                                lt::alert_cast<lt::peer_error_alert>(a) || lt::alert_cast<lt::dht_outgoing_get_peers_alert>(a) ||
                                lt::alert_cast<lt::incoming_connection_alert>(a) || lt::alert_cast<lt::dht_get_peers_alert>(a) ||
                                lt::alert_cast<lt::dht_announce_alert>(a))) {
      log("debug", a->message());
    } else if (lt::alert_cast<lt::portmap_alert>(a) || lt::alert_cast<lt::portmap_error_alert>(a)) {
      log("info", a->message());
    } else if (a->category() & lt::alert_category::error) {
      log("warning", a->message());
    }
  }

  torrent_entry* entry_of(lt::torrent_handle const& h) {
    if (!h.is_valid()) return nullptr;
    auto ih = h.info_hashes();
    if (!ih.has_v2()) return nullptr;
    info_hash2 key;
    std::copy(ih.v2.begin(), ih.v2.end(), key.begin());
    auto it = torrents.find(key);
    return it == torrents.end() ? nullptr : &it->second;
  }

  void on_item(lt::dht_mutable_item_alert const& m) {
    if (m.item.type() == lt::entry::undefined_t || !events.item) return;
    crypto::signed_item item;
    std::copy(m.key.begin(), m.key.end(), item.key.bytes.begin());
    std::copy(m.signature.begin(), m.signature.end(), item.sig.bytes.begin());
    item.salt = m.salt;
    item.seq = m.seq;
    lt::bencode(std::back_inserter(item.value), m.item);
    events.item(item);
  }

  // Metadata came from a peer: check everything it controls before a byte of data is written,
  // place the files we already have, then let the download start.
  void on_metadata(lt::torrent_handle const& h) {
    auto* e = entry_of(h);
    if (!e) return;
    auto ti = h.torrent_file();
    if (!ti) return;
    auto ok = detail::check_info(*ti, e->spec.max_size);
    if (!ok) {
      log("warning", "refused the metadata of " + to_hex(e->spec.ih2) + ": " + ok.err().message);
      auto ih2 = e->spec.ih2;
      ses->remove_torrent(h, lt::session::delete_files);
      torrents.erase(ih2);
      if (events.failed) events.failed(ih2, ok.err().message);
      return;
    }
    detail::placement placed;
    lt::add_torrent_params old;
    if (!e->spec.reuse_resume.empty()) {
      lt::error_code ec;
      old = lt::read_resume_data({e->spec.reuse_resume.data(), static_cast<std::ptrdiff_t>(e->spec.reuse_resume.size())}, ec);
      if (!ec && old.ti) {
        placed = detail::place_unchanged(*old.ti, e->spec.reuse_path, *ti, e->spec.save_path);
        e->reused = placed.bytes;
      }
    }
    // Its small files come whole from a peer, if one speaks the extension (a first fetch or an
    // update alike); the rest of on_metadata then runs from small_files_done.
    if (auto asked = small_files_to_ask(*e, *ti, placed); !asked.empty()) {
      ask_small_files(*e, h, std::move(ti), std::move(placed), std::move(old), std::move(asked));
      return;
    }
    place_rest(*e, h, *ti, placed, old);
  }

  // The small files of `ti` a peer is asked for whole: not placed, not on disk already (a fetch
  // interrupted by a crash checks those instead), of one piece. None when the version's download
  // is rate-limited: these bytes would bypass the limit.
  std::vector<detail::small_file> small_files_to_ask(torrent_entry const& e, lt::torrent_info const& ti, detail::placement const& placed) {
    if (e.spec.download_limit > 0 || cfg.download_rate_limit > 0) return {};
    std::set<lt::file_index_t> done;
    for (auto const& [file, old_file] : placed.files) done.insert(file);
    std::vector<detail::small_file> out;
    auto const& files = ti.files();
    for (auto i : files.file_range()) {
      if (done.count(i) || !detail::sent_whole(ti, i)) continue;
      std::error_code ec;
      if (std::filesystem::exists(e.spec.save_path / files.file_path(i), ec) || ec) continue;
      out.push_back({static_cast<int>(i), files.file_size(i)});
    }
    return out;
  }

  void ask_small_files(torrent_entry& e, lt::torrent_handle const& h, std::shared_ptr<lt::torrent_info const> ti, detail::placement placed,
                       lt::add_torrent_params old, std::vector<detail::small_file> asked) {
    auto id = next_small_wait++;
    auto key = e.spec.ih2;
    std::weak_ptr<impl> w = shared_from_this();
    auto timeout = std::make_shared<boost::asio::steady_timer>(ioc);
    auto deadline = std::chrono::steady_clock::now() + detail::small_fetch_budget;
    e.waiting_small = torrent_entry::small_wait{id, ti, std::move(placed), std::move(old), asked.size(), 0, 0, 0, deadline, timeout};
    arm_small_timeout(key, *e.waiting_small);
    log("info", "asking a peer for the " + std::to_string(asked.size()) + " small files of " + to_hex(key) + " whole");
    auto on_io = [w, &io = ioc](auto f) {
      boost::asio::post(io, [w, f = std::move(f)]() mutable {
        if (auto self = w.lock()) f(*self);
      });
    };
    detail::small_fetch how;
    how.ti = std::move(ti);
    how.save_path = e.spec.save_path.string();
    how.file = [on_io, key, id](int index, std::int64_t bytes, detail::small_outcome outcome) {
      on_io([key, id, index, bytes, outcome](impl& self) { self.took_small_file(key, id, index, bytes, outcome); });
    };
    how.done = [on_io, key, id] { on_io([key, id](impl& self) { self.small_files_done(key, id); }); };
    on_network_thread(small, [h, asked = std::move(asked), how](detail::small_files_plugin& hub) mutable {
      auto done = how.done;
      if (!hub.fetch(h, std::move(asked), std::move(how))) done();  // no peer speaks it: all through the swarm
    });
  }

  // Gives up on the peer after small_fetch_timeout without an answer, or at the wait's deadline.
  void arm_small_timeout(info_hash2 const& key, torrent_entry::small_wait& wait) {
    std::weak_ptr<impl> w = shared_from_this();
    wait.timeout->expires_at(std::min(std::chrono::steady_clock::now() + detail::small_fetch_timeout, wait.deadline));
    wait.timeout->async_wait([w, key, id = wait.id](boost::system::error_code const& ec) {
      if (auto self = w.lock(); self && !ec) self->small_files_done(key, id);
    });
  }

  torrent_entry::small_wait* small_wait_of(info_hash2 const& key, std::uint64_t id) {
    auto it = torrents.find(key);
    if (it == torrents.end() || !it->second.waiting_small || it->second.waiting_small->id != id) return nullptr;
    return &*it->second.waiting_small;
  }

  // A file a peer sent for version `key`, checked against its root and written in place (or
  // not): one written counts as placed. One for a version no longer waiting is dropped (the
  // file, if written, is checked by libtorrent with the rest on disk).
  void took_small_file(info_hash2 const& key, std::uint64_t id, int index, std::int64_t bytes, detail::small_outcome outcome) {
    auto* wait = small_wait_of(key, id);
    if (!wait) return;
    arm_small_timeout(key, *wait);
    if (outcome == detail::small_outcome::mismatch) ++wait->refused;
    if (outcome != detail::small_outcome::written) return;
    wait->placed.files.push_back({lt::file_index_t{index}, lt::file_index_t{-1}});
    ++wait->taken;
    wait->bytes += bytes;
    torrents.at(key).side_down += bytes;
  }

  // The peer answered every file (or its connection went, or it went silent): the rest of
  // on_metadata, with the files it sent placed.
  void small_files_done(info_hash2 const& key, std::uint64_t id) {
    auto* waiting = small_wait_of(key, id);
    if (!waiting) return;
    auto& e = torrents.at(key);
    auto wait = std::move(*waiting);
    e.waiting_small.reset();
    wait.timeout->cancel();
    log(wait.refused > 0 ? "warning" : "info",
        "small files of " + to_hex(key) + ": " + std::to_string(wait.taken) + " of " + std::to_string(wait.asked) + " (" +
            std::to_string(wait.bytes) + " bytes) came whole from a peer" +
            (wait.refused > 0 ? ", " + std::to_string(wait.refused) + " refused (not the published bytes)" : std::string()) +
            (wait.taken < wait.asked ? "; the swarm sends the rest" : ""));
    if (!e.handle.is_valid()) return;
    place_rest(e, e.handle, *wait.ti, wait.placed, wait.old);
  }

  // on_metadata after the files it could place: re-adds the version to check or take them.
  void place_rest(torrent_entry& e, lt::torrent_handle const& h, lt::torrent_info const& ti, detail::placement const& placed,
                  lt::add_torrent_params const& old) {
    // Files already on disk (placed just now, or written before a crash that came before any
    // resume data held the metadata) must be checked rather than fetched again. libtorrent has
    // already checked (and found nothing) by the time this alert is handled, so the torrent goes
    // out and comes back with its metadata: the re-add checks the files, then fetches the rest.
    // When the files on disk are exactly those placed from the previous version (and the small
    // files a peer sent, checked against their roots), nothing is read: they are the bytes that
    // version verified (hard links to them), and they come back as had, with their piece layers
    // from its resume data. Hashing them again costs as long as hashing the whole site, on every
    // mirror, for every update.
    std::set<lt::file_index_t> placed_files;
    for (auto const& [file, old_file] : placed.files) placed_files.insert(file);
    bool any_on_disk = false, only_placed = true;
    auto const& files = ti.files();
    for (auto i : files.file_range()) {
      std::error_code fec;
      if (!files.pad_file_at(i) && std::filesystem::file_size(e.spec.save_path / files.file_path(i), fec) > 0 && !fec) {
        any_on_disk = true;
        if (!placed_files.count(i)) only_placed = false;
      }
    }
    if (!any_on_disk) {
      h.unset_flags(lt::torrent_flags::upload_mode);
      return;
    }
    if (only_placed) {
      auto start = detail::start_from_placed(old, ti, placed);
      if (start) {
        e.readd = std::move(start->ti);
        e.readd_have = std::move(start->have);
        log("info", "reusing " + std::to_string(placed.bytes) + " bytes of unchanged files for " + to_hex(e.spec.ih2) +
                        " as verified by the previous version");
      } else {
        log("warning", "checking the " + std::to_string(placed.bytes) + " bytes of unchanged files placed for " + to_hex(e.spec.ih2) +
                           ": " + start.err().message);
      }
    } else {
      log("info", "checking the files already on disk for " + to_hex(e.spec.ih2) + " (" + std::to_string(placed.bytes) +
                      " bytes placed from the previous version)");
    }
    if (!e.readd) e.readd = std::make_shared<lt::torrent_info>(ti);  // re-added bare: checked in full
    // Its peers are connected again at once, not found again through the DHT.
    std::vector<lt::peer_info> peers;
    h.get_peer_info(peers);
    e.readd_peers.clear();
    for (auto const& p : peers)
      if (p.flags & lt::peer_info::outgoing_connection) e.readd_peers.push_back(p.ip);
    ses->remove_torrent(h);
  }

  void on_removed(lt::info_hash_t const& ih) {
    if (!ih.has_v2()) return;
    info_hash2 key;
    std::copy(ih.v2.begin(), ih.v2.end(), key.begin());
    auto it = torrents.find(key);
    if (it == torrents.end() || !it->second.readd) return;
    auto& e = it->second;
    lt::add_torrent_params atp;
    atp.ti = std::move(e.readd);
    atp.have_pieces = std::move(e.readd_have);
    atp.save_path = e.spec.save_path.string();
    atp.userdata = tag_for(e.spec);
    atp.flags &= ~(lt::torrent_flags::auto_managed | lt::torrent_flags::paused | lt::torrent_flags::upload_mode);
    atp.upload_limit = lt_rate(e.spec.upload_limit);
    atp.download_limit = lt_rate(e.spec.download_limit);
    lt::error_code ec;
    e.handle = ses->add_torrent(std::move(atp), ec);
    if (ec) {
      log("error", "cannot add " + to_hex(key) + " back after placing its files: " + ec.message());
      torrents.erase(it);
      if (events.failed) events.failed(key, ec.message());
      return;
    }
    // Its peers at once: those it had connected to and the static ones (peers that had connected
    // to it are known only by a port of theirs that does not listen). If that is not enough, its
    // first nudge asks the DHT after 1 s. Not at once: libtorrent's own first announce of it comes
    // a little later, and a newcomer that knows only this node (a tiny DHT, the others gone) finds
    // it only if that announce reaches the newcomer's DHT node.
    connect_known_peers(e);
    e.readded = true;
    e.stuck_since.reset();
  }

  void report_finished(lt::torrent_handle const& h) {
    auto* e = entry_of(h);
    auto st = status_of(h);
    if (!e || e->finished_reported || !st || !st->has_metadata) return;
    e->finished_reported = true;
    serve_small_files(*e, h);
    ++outstanding_resume;
    h.save_resume_data(lt::torrent_handle::save_info_dict);
    if (events.finished) events.finished(e->spec.ih2);
  }

  // A complete version answers peers' requests for its small files (net/detail/small_files.hpp),
  // unless its upload is rate-limited: those bytes would bypass the limit.
  void serve_small_files(torrent_entry const& e, lt::torrent_handle const& h) {
    if (e.spec.upload_limit > 0 || cfg.upload_rate_limit > 0) {
      on_network_thread(small, [h](detail::small_files_plugin& hub) { hub.withdraw(h); });
      return;
    }
    auto ti = h.torrent_file();
    if (!ti) return;
    on_network_thread(small, [h, save_path = e.spec.save_path.string(), ti = std::move(ti)](detail::small_files_plugin& hub) mutable {
      hub.serve(h, std::move(save_path), std::move(ti));
    });
  }

  void connect_static_peers(lt::torrent_handle const& h) {
    for (auto const& ep : static_peers) h.connect_peer(ep);
  }

  // The static peers and, for a version added back after placing files, those it had connected to.
  void connect_known_peers(torrent_entry const& e) {
    connect_static_peers(e.handle);
    for (auto const& ep : e.readd_peers) e.handle.connect_peer(ep);
  }

  // A fetch that is stuck asks the DHT again (libtorrent would wait for its 15-minute announce
  // interval) and retries the static peers: one with no peers, and one whose peers cannot help
  // it, which is the common case when a new version's pointer arrives by push before its
  // seeds' announces reached the DHT: the other mirrors, fetching too and holding nothing,
  // answer the first lookup, and their connections (kept open by the fetch gate) would hide the
  // seeds until the next interval. Stuck means: no peers, no metadata yet, or no seed connected
  // and nothing arriving. It asks after 5 s (1 s for a version just added back after placing its
  // files, which had its peers a moment ago), then at doubling intervals up to 5 minutes.
  void nudge_stuck_fetches() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_announce < std::chrono::seconds(1)) return;
    last_announce = now;
    for (auto& [ih, e] : torrents) {
      if (e.finished_reported) continue;  // a seed: no status round trip for it
      auto maybe = status_of(e.handle);
      if (!maybe) continue;
      auto const& st = *maybe;
      bool const stuck = !st.is_finished && (st.num_peers == 0 || !st.has_metadata || (st.num_seeds == 0 && st.download_payload_rate == 0));
      if (!stuck) {
        e.stuck_since.reset();
        continue;
      }
      if (!e.stuck_since) {
        e.stuck_since = now;
        e.nudge_after = std::chrono::seconds(e.readded ? 1 : 5);
      }
      if (now - *e.stuck_since < e.nudge_after) continue;
      e.nudge_after = std::min<std::chrono::seconds>(e.nudge_after * 2, std::chrono::minutes(5));
      e.stuck_since = now;
      log("debug", "fetch of " + to_hex(ih) + " stuck (" + std::to_string(st.num_peers) + " peers, " + std::to_string(st.num_seeds) +
                       " seeds, metadata " + (st.has_metadata ? "yes" : "no") + (st.errc ? ", error " + st.errc.message() : "") +
                       "): asking the DHT again");
      // With no connection left, libtorrent would not dial a peer it has tried again before
      // min_reconnect_time (60 s) times its failures: a seed that restarted refuses the first
      // redial while it is down, then waits, unknown, for a minute or more (it dials back only
      // the peers its resume data names). Its peer list is cleared instead, so the static and
      // known peers are dialled at once and the DHT names the rest again.
      if (st.num_peers == 0) e.handle.clear_peers();
      e.handle.force_dht_announce();
      connect_known_peers(e);
    }
  }

  // Every node of a publisher's beacon swarm is a seed of it, and libtorrent announces a seed's
  // torrents to the DHT as seeds and asks for peers with "noseed" (BEP 33): seeds never learn of
  // each other there, and two mirrors that know each other only through the DHT never connect
  // on the beacon, so push never reaches them. Each beacon therefore asks the DHT for all its
  // peers itself (seeds included) and connects to some: when added, then after 1, 2, 4, 8 and
  // then every 15 minutes (a node following 1,000 publishers makes about one lookup a second,
  // as libtorrent's own announces of 1,000 torrents do). Push floods over whatever connections
  // there are, so a few per node (`beacon_peers`) keep the publisher's nodes in one piece.
  static constexpr int beacon_peers = 8;
  std::minstd_rand rng{std::random_device{}()};

  static lt::sha1_hash dht_key(info_hash2 const& ih2) {  // how libtorrent names a v2 torrent in the DHT
    return lt::sha1_hash(reinterpret_cast<char const*>(ih2.data()));
  }

  void find_beacon_peers() {
    if (!dht_ready_reported) return;
    auto now = std::chrono::steady_clock::now();
    for (auto& [ih, e] : torrents) {
      if (!e.spec.push_publisher || now < e.next_peer_lookup || !e.handle.is_valid()) continue;
      auto st = status_of(e.handle);
      bool const short_of_peers = (st ? st->num_peers : 0) < beacon_peers;
      e.peer_lookup_after = short_of_peers ? std::min<std::chrono::seconds>(e.peer_lookup_after * 2, std::chrono::minutes(15))
                                           : std::chrono::minutes(15);
      e.next_peer_lookup = now + e.peer_lookup_after;
      ses->dht_get_peers(dht_key(ih));
    }
  }

  void on_beacon_peers(lt::sha1_hash const& key, std::vector<lt::tcp::endpoint> found) {
    for (auto& [ih, e] : torrents) {
      if (!e.spec.push_publisher || dht_key(ih) != key || !e.handle.is_valid()) continue;
      auto st = status_of(e.handle);
      int room = beacon_peers - (st ? st->num_peers : 0);
      std::shuffle(found.begin(), found.end(), rng);
      int connected = 0;
      for (auto const& ep : found) {
        if (connected >= room) break;
        if (std::find(cached.listen.begin(), cached.listen.end(), endpoint_text(ep.address(), ep.port())) != cached.listen.end())
          continue;  // ourselves
        e.handle.connect_peer(ep);
        ++connected;
      }
      log("debug", "beacon " + to_hex(ih) + ": " + std::to_string(found.size()) + " peers in the DHT, connecting to " + std::to_string(connected));
    }
  }

  // On 2.0.8 a DHT started together with the session throws its saved state away: enable it only
  // once the listen socket is up, after handing it the saved state (shared/libtorrent-notes.md).
  void enable_dht() {
    dht_enabled = true;
    if (pending_dht_state) {
      ses->set_dht_state(std::move(*pending_dht_state));
      pending_dht_state.reset();
    }
    lt::settings_pack p;
    p.set_bool(lt::settings_pack::enable_dht, true);
    ses->apply_settings(std::move(p));
  }

  // add_dht_node calls made before the DHT runs are dropped silently: add them once it does.
  void add_bootstrap_nodes() {
    for (auto const& b : cfg.bootstrap) {
      if (!validate_endpoint(b, true)) continue;
      auto hp = split_endpoint(b);
      if (hp) ses->add_dht_node({hp->host, hp->port});
    }
  }

  std::string node_id() const {
    if (!ses || !ses->is_dht_running()) return {};
    auto st = ses->session_state(lt::session::save_dht_state);
    if (st.dht_state.nids.empty()) return {};
    return lt::aux::to_hex(st.dht_state.nids.front().second);
  }

  // The first time the DHT has a node: announce what was added before, and tell the node.
  void check_dht_ready() {
    if (dht_ready_reported || cached.dht_nodes <= 0) return;
    dht_ready_reported = true;
    // Torrents added before the DHT had nodes announced to nobody, and libtorrent would wait
    // its 15-minute interval to try again: announce them all now, seeds included.
    for (auto& [ih, e] : torrents)
      if (e.handle.is_valid()) e.handle.force_dht_announce();
    if (events.dht_ready) events.dht_ready();
  }

  void tick() {
    if (!ses) return;
    cached.dht_running = ses->is_dht_running();
    if (cached.dht_running && !bootstrapped) {
      bootstrapped = true;
      last_bootstrap = first_bootstrap = std::chrono::steady_clock::now();
      add_bootstrap_nodes();
      log("info", "DHT running, node id " + node_id());
    } else if (bootstrapped && cached.dht_nodes == 0 && std::chrono::steady_clock::now() - last_bootstrap > std::chrono::seconds(5)) {
      // Still no DHT node: the first contact was lost (libtorrent retries its routers by name,
      // not the IP-literal nodes we add). Knock again, every 5 s until someone answers.
      last_bootstrap = std::chrono::steady_clock::now();
      add_bootstrap_nodes();
      log("debug", "no DHT nodes yet: contacting the bootstrap nodes again");
    }
    ses->post_session_stats();
    check_dht_ready();
    nudge_stuck_fetches();
    find_beacon_peers();
    // Until the DHT has its first node, its figures are read every 100 ms (for 10 s): a follow
    // made right after start waits on it, and at one read a second it learned of the node about
    // 2 s late (a figure is a tick old when it is read).
    auto now = std::chrono::steady_clock::now();
    bool eager = bootstrapped && !dht_ready_reported && now - first_bootstrap < std::chrono::seconds(10);
    timer.expires_after(!bootstrapped ? std::chrono::milliseconds(50) : eager ? std::chrono::milliseconds(100) : std::chrono::seconds(1));
    timer.async_wait([w = weak_from_this()](boost::system::error_code ec) {
      if (auto self = w.lock(); self && !ec) self->tick();
    });
  }
};

result<std::unique_ptr<session>> session::start(boost::asio::io_context& ioc, session_config const& cfg,
                                                std::optional<std::string> saved_state, log_fn log) {
  for (auto const& l : cfg.listen)
    if (auto ok = validate_endpoint(l, true); !ok) return make_error(errc::invalid_argument, "listen: " + ok.err().message);
  for (auto const& b : cfg.bootstrap)
    if (auto ok = validate_endpoint(b, false); !ok) return make_error(errc::invalid_argument, "bootstrap: " + ok.err().message);
  for (auto const& p : cfg.peers)
    if (auto ok = validate_endpoint(p, false); !ok) return make_error(errc::invalid_argument, "peer: " + ok.err().message);
  if (cfg.listen.empty()) return make_error(errc::invalid_argument, "listen: at least one address is needed");

  auto p = std::make_shared<impl>(ioc, cfg, std::move(log));
  lt::session_params params;
  if (saved_state && !saved_state->empty()) {
    try {
      auto restored = lt::read_session_params({saved_state->data(), static_cast<std::ptrdiff_t>(saved_state->size())},
                                              lt::session::save_dht_state);
      p->pending_dht_state = std::move(restored.dht_state);
    } catch (std::exception const& e) {
      p->log("warning", std::string("saved DHT state is damaged, starting afresh: ") + e.what());
    }
  }
  for (auto const& peer : cfg.peers) {
    auto hp = split_endpoint(peer);
    boost::asio::ip::tcp::resolver resolver(ioc);
    boost::system::error_code ec;
    auto found = resolver.resolve(hp->host, std::to_string(hp->port), ec);
    if (ec) {
      p->log("warning", "cannot resolve peer " + peer + ": " + ec.message());
      continue;
    }
    for (auto const& r : found) p->static_peers.push_back(r.endpoint());
  }
  params.settings = p->settings(false);
  if (cfg.push) {
    // The sink runs on libtorrent's thread: it only carries messages over to ours.
    std::weak_ptr<impl> w = p;
    detail::push_sink sink;
    sink.hello = [w, &ioc](peer_ref ref, crypto::public_key const& publisher, std::string const& who) {
      boost::asio::post(ioc, [w, ref, publisher, who] {
        if (auto self = w.lock(); self && self->events.push_hello) self->events.push_hello(ref, publisher, who);
      });
    };
    sink.message = [w, &ioc](peer_ref ref, crypto::public_key const& publisher, std::string const& who, push_message msg) {
      boost::asio::post(ioc, [w, ref, publisher, who, msg = std::move(msg)] {
        if (auto self = w.lock(); self && self->events.push_message) self->events.push_message(ref, publisher, who, msg);
      });
    };
    p->push = std::make_shared<detail::push_plugin>(std::move(sink), detail::push_limits{});
    params.extensions.push_back(p->push);
  }
  params.extensions.push_back(std::make_shared<detail::fetch_gate_plugin>());
  params.extensions.push_back(p->small);
  p->idx_dht_nodes = lt::find_metric_idx("dht.dht_nodes");
  p->idx_peers = lt::find_metric_idx("peer.num_peers_connected");
  p->idx_down = lt::find_metric_idx("net.recv_payload_bytes");
  p->idx_up = lt::find_metric_idx("net.sent_payload_bytes");
  p->idx_failed = lt::find_metric_idx("net.recv_failed_bytes");
  p->idx_banned = lt::find_metric_idx("peer.banned_for_hash_failure");
  try {
    p->ses = std::make_unique<lt::session>(std::move(params));
  } catch (std::exception const& e) {
    return make_error(errc::io_error, std::string("cannot start the BitTorrent session: ") + e.what());
  }
  if (cfg.local_swarm && (cfg.upload_rate_limit > 0 || cfg.download_rate_limit > 0)) {
    // libtorrent exempts local-network peers (loopback included) from rate limits; a local
    // swarm is all local peers, so put every address in the global, limited class.
    lt::ip_filter classes;
    auto global = std::uint32_t(1) << static_cast<std::uint32_t>(lt::session::global_peer_class_id);
    classes.add_rule(boost::asio::ip::make_address("0.0.0.0"), boost::asio::ip::make_address("255.255.255.255"), global);
    classes.add_rule(boost::asio::ip::make_address("::"), boost::asio::ip::make_address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), global);
    p->ses->set_peer_class_filter(classes);
  }
  std::weak_ptr<impl> weak = p;
  p->ses->set_alert_notify([weak, &ioc] {
    boost::asio::post(ioc, [weak] {
      if (auto self = weak.lock()) self->on_alerts();
    });
  });
  p->tick();
  return std::unique_ptr<session>(new session(std::move(p)));
}

session::session(std::shared_ptr<impl> p) : m_impl(std::move(p)) {}

session::~session() { stop(); }

session_stats session::stats() const { return m_impl->cached; }

void session::set_events(session_events ev) { m_impl->events = std::move(ev); }

status session::add_version(version_spec const& spec) {
  auto& p = *m_impl;
  if (!p.ses) return make_error(errc::unavailable, "the session is stopped");
  if (p.torrents.count(spec.ih2)) return {};
  lt::add_torrent_params atp;
  lt::error_code ec;
  if (!spec.resume.empty()) {
    atp = lt::read_resume_data({spec.resume.data(), static_cast<std::ptrdiff_t>(spec.resume.size())}, ec);
    if (ec) return make_error(errc::invalid_argument, "damaged resume data for " + to_hex(spec.ih2) + ": " + ec.message());
  } else if (!spec.torrent.empty()) {
    try {
      atp.ti = std::make_shared<lt::torrent_info>(lt::span<char const>(spec.torrent.data(), static_cast<std::ptrdiff_t>(spec.torrent.size())),
                                                  lt::from_span);
    } catch (std::exception const& e) {
      return make_error(errc::invalid_argument, std::string("damaged torrent: ") + e.what());
    }
  } else {
    std::copy(spec.ih2.begin(), spec.ih2.end(), atp.info_hashes.v2.begin());
  }
  if (atp.ti && detail::v2_of(*atp.ti) != spec.ih2)
    return make_error(errc::invalid_argument, "the torrent does not match info-hash " + to_hex(spec.ih2));
  atp.save_path = spec.save_path.string();
  atp.userdata = p.tag_for(spec);
  // Flags come from us, not from saved resume data (which may have been saved mid-way).
  atp.flags &= ~(lt::torrent_flags::auto_managed | lt::torrent_flags::paused | lt::torrent_flags::upload_mode |
                 lt::torrent_flags::seed_mode | lt::torrent_flags::stop_when_ready);
  if (spec.seed) atp.flags |= lt::torrent_flags::seed_mode;
  // Not file priorities: libtorrent keeps the pieces of a file it may not download in a part
  // file, so it would neither read nor serve the real one. Upload mode set here stays (it is
  // lifted by itself only for auto-managed torrents, which ours are not).
  if (spec.no_download) atp.flags |= lt::torrent_flags::upload_mode;
  atp.upload_limit = lt_rate(spec.upload_limit);  // resume data may hold an old one
  atp.download_limit = lt_rate(spec.download_limit);
  // Until its metadata is checked, a version only fetches metadata: no data is requested. Its
  // gate keeps its connections open meanwhile (net/detail/fetch_gate.hpp).
  if (!atp.ti) {
    atp.flags |= lt::torrent_flags::upload_mode;
    if (!spec.push_publisher) atp.userdata = lt::client_data_t(&p.fetch_tag);
  }
  auto h = p.ses->add_torrent(std::move(atp), ec);
  if (ec) return make_error(errc::io_error, "cannot add " + to_hex(spec.ih2) + ": " + ec.message());
  auto& entry = p.torrents[spec.ih2];
  entry.handle = h;
  entry.spec = spec;
  p.connect_static_peers(h);
  if (auto st = status_of(h); st && st->is_finished) p.report_finished(h);
  return {};
}

void session::remove_version(info_hash2 const& ih2, bool delete_files) {
  auto& p = *m_impl;
  auto it = p.torrents.find(ih2);
  if (it == p.torrents.end() || !p.ses) return;
  if (it->second.handle.is_valid())
    p.ses->remove_torrent(it->second.handle, delete_files ? lt::session::delete_files : lt::remove_flags_t{});
  p.torrents.erase(it);
}

std::vector<bool> session::verified_files(info_hash2 const& ih2) const {
  auto it = m_impl->torrents.find(ih2);
  if (it == m_impl->torrents.end() || !it->second.handle.is_valid()) return {};
  auto const& h = it->second.handle;
  auto ti = h.torrent_file();
  if (!ti) return {};
  auto progress = h.file_progress(lt::torrent_handle::piece_granularity);  // verified pieces only
  auto const& fs = ti->files();
  std::vector<bool> out(static_cast<std::size_t>(fs.num_files()));
  for (auto i : fs.file_range()) {
    auto n = static_cast<std::size_t>(static_cast<int>(i));
    out[n] = n < progress.size() && fs.file_size(i) > 0 && progress[n] == fs.file_size(i);
  }
  return out;
}

void session::want_file(info_hash2 const& ih2, int file) {
  auto it = m_impl->torrents.find(ih2);
  if (it == m_impl->torrents.end() || !it->second.handle.is_valid()) return;
  auto const& h = it->second.handle;
  auto ti = h.torrent_file();
  if (!ti) return;
  auto const& fs = ti->files();
  lt::file_index_t f(file);
  if (file < 0 || f >= fs.end_file() || fs.file_size(f) == 0) return;
  h.file_priority(f, lt::top_priority);
  // Its first pieces as time-critical too: a page's HTML or an image, wanted now.
  auto first = fs.map_file(f, 0, 0).piece, last = fs.map_file(f, fs.file_size(f) - 1, 0).piece;
  for (int n = 0; first <= last && n < 64; ++first, ++n) h.set_piece_deadline(first, 0);
}

void session::set_rate_limits(info_hash2 const& ih2, int upload, int download) {
  auto it = m_impl->torrents.find(ih2);
  if (it == m_impl->torrents.end()) return;
  auto& e = it->second;
  e.spec.upload_limit = upload;
  e.spec.download_limit = download;
  if (!e.handle.is_valid()) return;  // between removal and re-adding: the re-add takes them
  e.handle.set_upload_limit(lt_rate(upload));
  e.handle.set_download_limit(lt_rate(download));
  if (e.finished_reported) m_impl->serve_small_files(e, e.handle);
}

namespace {

// `taking`: bytes of small files written while the version waits on a peer for them (libtorrent
// counts them once the version is added back with them as had).
torrent_state state_of(lt::torrent_status const& st, std::int64_t reused, std::int64_t side_down, std::int64_t taking) {
  torrent_state out;
  out.has_metadata = st.has_metadata;
  out.complete = st.is_finished && st.has_metadata;
  out.checking = st.state == lt::torrent_status::checking_files || st.state == lt::torrent_status::checking_resume_data;
  out.progress = st.has_metadata ? static_cast<double>(st.progress) : 0.0;
  out.total_done = st.total_wanted_done;
  out.total_wanted = st.total_wanted;
  if (taking > 0 && st.has_metadata && st.total_wanted > 0) {
    out.total_done = std::min(st.total_wanted, st.total_wanted_done + taking);
    out.progress = static_cast<double>(out.total_done) / static_cast<double>(st.total_wanted);
  }
  out.payload_down = st.total_payload_download + side_down;
  out.payload_up = st.total_payload_upload;
  out.reused = reused;
  out.peers = st.num_peers;
  return out;
}

}  // namespace

std::optional<torrent_state> session::version_state(info_hash2 const& ih2) const {
  auto it = m_impl->torrents.find(ih2);
  if (it == m_impl->torrents.end()) return std::nullopt;
  auto maybe = status_of(it->second.handle);
  if (!maybe) {  // between removal and re-adding: nothing to report yet
    torrent_state out;
    out.reused = it->second.reused;
    return out;
  }
  return state_of(*maybe, it->second.reused, it->second.side_down, impl::taking_of(it->second));
}

std::map<info_hash2, torrent_state> session::version_states() const {
  std::map<info_hash2, torrent_state> out;
  auto& p = *m_impl;
  if (!p.ses) return out;
  auto all = p.ses->get_torrent_status([](lt::torrent_status const&) { return true; });
  for (auto const& st : all) {
    if (!st.info_hashes.has_v2()) continue;
    info_hash2 key;
    std::copy(st.info_hashes.v2.begin(), st.info_hashes.v2.end(), key.begin());
    auto it = p.torrents.find(key);
    if (it == p.torrents.end()) continue;
    out.emplace(key, state_of(st, it->second.reused, it->second.side_down, impl::taking_of(it->second)));
  }
  // Versions between removal and re-adding: present, with nothing to report yet.
  for (auto const& [key, e] : p.torrents)
    if (!out.count(key)) {
      torrent_state blank;
      blank.reused = e.reused;
      out.emplace(key, blank);
    }
  return out;
}

result<std::string> session::metadata(info_hash2 const& ih2) const {
  auto it = m_impl->torrents.find(ih2);
  if (it == m_impl->torrents.end() || !it->second.handle.is_valid()) return make_error(errc::not_found, "no such version in the swarm");
  auto ti = it->second.handle.torrent_file();
  if (!ti || !ti->is_valid()) return make_error(errc::unavailable, "the metadata of " + to_hex(ih2) + " is not known yet");
  return detail::torrent_bytes(*ti);
}

result<std::string> session::torrent_file(info_hash2 const& ih2) const {
  auto it = m_impl->torrents.find(ih2);
  if (it == m_impl->torrents.end() || !it->second.handle.is_valid()) return make_error(errc::not_found, "no such version in the swarm");
  try {
    auto ti = it->second.handle.torrent_file_with_hashes();
    if (!ti) return make_error(errc::unavailable, "the metadata of " + to_hex(ih2) + " is not known yet");
    lt::create_torrent ct(*ti);
    std::string out;
    lt::bencode(std::back_inserter(out), ct.generate());
    return out;
  } catch (std::exception const& e) {
    return make_error(errc::unavailable, std::string("cannot write the torrent of ") + to_hex(ih2) + ": " + e.what());
  }
}

void session::save_resume_data() {
  for (auto& [ih, e] : m_impl->torrents) {
    if (!e.handle.is_valid() || !e.handle.need_save_resume_data()) continue;
    ++m_impl->outstanding_resume;
    e.handle.save_resume_data(lt::torrent_handle::save_info_dict);
  }
}

void session::drain_alerts(std::chrono::milliseconds timeout) {
  auto& p = *m_impl;
  if (!p.ses) return;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (p.outstanding_resume > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (p.ses->wait_for_alert(left)) p.on_alerts();
  }
}

void session::put_item(crypto::signed_item const& item) {
  if (!m_impl->ses) return;
  std::array<char, 32> key;
  std::copy(item.key.bytes.begin(), item.key.bytes.end(), key.begin());
  lt::entry value;
  try {
    value = lt::bdecode({item.value.data(), static_cast<std::ptrdiff_t>(item.value.size())});
  } catch (std::exception const&) {
    return;  // verified records always decode; nothing to put otherwise
  }
  m_impl->ses->dht_put_item(key, [item, value](lt::entry& v, std::array<char, 64>& sig, std::int64_t& seq, std::string const&) {
    v = value;
    std::copy(item.sig.bytes.begin(), item.sig.bytes.end(), sig.begin());
    seq = item.seq;
  }, item.salt);
}

void session::get_item(crypto::public_key const& key, std::string const& salt) {
  if (!m_impl->ses) return;
  std::array<char, 32> k;
  std::copy(key.bytes.begin(), key.bytes.end(), k.begin());
  m_impl->ses->dht_get_item(k, salt);
}

std::string session::save_state() const {
  if (!m_impl->ses) return {};
  auto params = m_impl->ses->session_state(lt::session::save_dht_state);
  // Until the DHT has run, the saved state would be empty: keep the one we were given.
  if (m_impl->pending_dht_state) params.dht_state = *m_impl->pending_dht_state;
  auto buf = lt::write_session_params_buf(params, lt::session::save_dht_state);
  return std::string(buf.begin(), buf.end());
}

void session::push_send(peer_ref to, std::vector<std::string> payloads) {
  m_impl->on_network_thread(m_impl->push, [to, payloads = std::move(payloads)](detail::push_plugin& hub) {
    for (auto const& pl : payloads) hub.send(to, pl);
  });
}

void session::push_record(crypto::signed_item const& item, peer_ref except) {
  m_impl->on_network_thread(m_impl->push, [key = item.key, payload = encode_push_record(item), except](detail::push_plugin& hub) {
    hub.send_all(key, payload, except);
  });
}

void session::push_drop(peer_ref who, std::string reason) {
  m_impl->log("info", "disconnecting a push peer: " + reason);
  m_impl->on_network_thread(m_impl->push, [who](detail::push_plugin& hub) { hub.drop(who); });
}

push_stats session::push_counters() const {
  push_stats out;
  if (auto const& hub = m_impl->push) {
    out.peers = hub->counters.peers;
    out.received = hub->counters.received;
    out.sent = hub->counters.sent;
    out.dropped_rate = hub->counters.dropped_rate;
    out.dropped_bad = hub->counters.dropped_bad;
  }
  return out;
}

small_file_stats session::small_file_counters() const {
  auto const& c = m_impl->small->counters;
  return {c.served, c.bytes_served, c.refused, c.received};
}

std::string session::dht_node_id() const { return m_impl->node_id(); }

void session::stop() {
  if (!m_impl->ses) return;
  m_impl->timer.cancel();
  m_impl->ses->set_alert_notify([] {});
  auto proxy = m_impl->ses->abort();
  m_impl->ses.reset();
  // proxy's destructor waits for libtorrent's threads to finish.
}

}  // namespace outlast::net
