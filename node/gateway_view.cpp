// The node's side of the gateway: building the immutable views it serves.
#include <malloc.h>

#include <boost/asio/post.hpp>

#include "crypto/key_file.hpp"
#include "node/detail/node_impl.hpp"

namespace outlast::node {

namespace {
constexpr auto view_interval = std::chrono::seconds(1);
}  // namespace

std::shared_ptr<net::file_index const> node::impl::index_of(site_id const& s, storage::version_record const& v) {
  if (auto it = file_indexes.find(v.ih2); it != file_indexes.end()) return it->second;
  std::optional<std::string> data;
  (void)store->read([&](storage::txn& t) -> status {
    if (auto b = t.get_blob(resume_space, net::to_hex(v.ih2)); b && *b && !(*b)->empty()) data = **b;
    return {};
  });
  auto idx = data ? net::index_version(*data) : result<net::file_index>(make_error(errc::not_found, "no resume data"));
  if (!idx)  // none yet, or damaged: the .torrent beside the files
    if (auto t = crypto::read_small_file(version_dir(s, v.seq).string() + ".torrent", 256 << 20)) idx = net::index_version(*t);
  if (!idx && session)  // a version just finished: neither is written yet, but the swarm has its metadata
    if (auto t = session->metadata(v.ih2)) idx = net::index_version(*t);
  return keep_index(v.ih2, std::move(idx), s.address() + " version " + std::to_string(v.seq));
}

std::shared_ptr<net::file_index const> node::impl::keep_index(net::info_hash2 const& ih2, result<net::file_index> idx,
                                                                std::string const& what) {
  if (!idx) {
    log.warn("gateway", what + ": " + idx.err().message);
    return nullptr;
  }
  // The root folder name comes from the publisher's torrent: one plain path component only.
  auto const& name = idx->root_dir;
  if (name == "." || name == ".." || name.find('/') != std::string::npos) return nullptr;
  auto shared = std::make_shared<net::file_index const>(std::move(*idx));
  file_indexes[ih2] = shared;
  return shared;
}

net::served_site node::impl::served_version(site_id const& s, std::int64_t seq, net::file_index const& idx) const {
  net::served_site served;
  served.root = idx.root_dir.empty() ? version_dir(s, seq) : version_dir(s, seq) / idx.root_dir;
  served.version = seq;
  served.files = idx.files;
  return served;
}

std::optional<net::served_site> node::impl::syncing_site(fetch const& f) {
  auto known = file_indexes.find(f.ih2);
  auto idx = known != file_indexes.end() ? known->second : nullptr;
  if (!idx) {
    auto t = session->metadata(f.ih2);
    if (!t) return std::nullopt;  // no metadata yet
    idx = keep_index(f.ih2, net::index_version(*t), f.site.address() + " version " + std::to_string(f.seq));
    if (!idx) return std::nullopt;
  }
  auto& ready = syncing_files[f.ih2];
  if (!ready) {
    // Files verified before now (a resumed fetch, files placed from nothing); later ones are
    // marked as libtorrent reports them (file_completed).
    auto verified = session->verified_files(f.ih2);
    if (verified.empty()) {
      syncing_files.erase(f.ih2);
      return std::nullopt;
    }
    auto r = std::make_shared<net::file_readiness>(verified.size());
    for (std::size_t i = 0; i < verified.size(); ++i) r->ready[i].store(verified[i], std::memory_order_relaxed);
    // Called on a gateway thread: the session is the node thread's.
    r->want = [this, ih2 = f.ih2](int file) { boost::asio::post(ioc, [this, ih2, file] { session->want_file(ih2, file); }); };
    ready = std::move(r);
  }
  auto served = served_version(f.site, f.seq, *idx);
  served.syncing = ready;
  return served;
}

void node::impl::refresh_view() {
  if (!gateway || !session) return;  // (the 1-second tick still runs for retry_lookups; no session: stopping)
  last_view_refresh = std::chrono::steady_clock::now();
  auto view = std::make_shared<net::gateway_view>();
  auto table = load_site_table();
  view->status = status_json(table);
  view->site_list = sites_json(table);
  view->notices = notices_json(std::nullopt, false);
  std::set<net::info_hash2> live;
  for (auto const& [rec, snap] : table) {
    if (rec.version <= 0) continue;
    site_id s{rec.key, rec.name};
    for (auto const& v : snap.versions) {
      if (v.seq != rec.version || !v.complete) continue;
      auto idx = index_of(s, v);
      if (!idx) continue;
      live.insert(v.ih2);
      view->sites.emplace(s.address(), served_version(s, v.seq, *idx));
    }
  }
  // Browse while syncing: a site with no complete version serves the verified files of the one
  // it fetches (a complete version always wins: readers never see two versions mixed).
  for (auto const& [ih2, f] : fetching) {
    if (view->sites.count(f.site.address())) continue;
    if (auto served = syncing_site(f)) {
      live.insert(ih2);
      view->sites.emplace(f.site.address(), std::move(*served));
    }
  }
  for (auto it = syncing_files.begin(); it != syncing_files.end();) it = live.count(it->first) ? std::next(it) : syncing_files.erase(it);
  for (auto it = file_indexes.begin(); it != file_indexes.end();) it = live.count(it->first) ? std::next(it) : file_indexes.erase(it);
  gateway->publish(std::move(view));
}

// Events (a version complete, a notice) refresh the view at once. The tick refreshes it too, for
// figures that move on their own (peers, progress, ages): every second while a version downloads
// or someone has looked at the node's pages in the last minute, else every 10 s. A node with 1,000
// sites nobody is watching spends its idle time idle.
bool node::impl::view_wanted() {
  auto now = std::chrono::steady_clock::now();
  if (gateway) {
    auto hits = gateway->node_page_requests();
    if (hits != node_page_hits) {
      node_page_hits = hits;
      last_node_page = now;
    }
  }
  return !fetching.empty() || now - last_node_page < std::chrono::minutes(1) || now - last_view_refresh >= std::chrono::seconds(10);
}

void node::impl::schedule_view() {
  view_timer.expires_after(view_interval);
  view_timer.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    retry_lookups();
    if (view_wanted()) refresh_view();
    // After a burst of downloads, give the heap glibc keeps back to the system (a node that
    // mirrored 1,000 sites otherwise holds on to the peak for good).
    if (heap_grew && fetching.empty()) {
      heap_grew = false;
      ::malloc_trim(0);
    }
    schedule_view();
  });
}

}  // namespace outlast::node
