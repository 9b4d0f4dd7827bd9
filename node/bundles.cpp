// Offline bundles (node/bundle.hpp): export a site to one file (its newest version, or every
// kept version with --all), import one. An import becomes visible only after every version's
// pointer signature, torrent info-hash and file merkle roots check out; a tampered or truncated
// bundle leaves nothing behind.
#include <boost/asio/post.hpp>
#include <fstream>
#include <random>

#include "crypto/key_file.hpp"
#include "node/bundle.hpp"
#include "node/detail/node_impl.hpp"

namespace outlast::node {

namespace fs = std::filesystem;
namespace asio = boost::asio;

namespace {

constexpr std::size_t max_bundle_notices = 16;

// Copies `n` bytes from `in` to a new file at `path`. Errors: io_error, invalid_argument (short).
status copy_out(std::ifstream& in, fs::path const& path, std::int64_t n) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return make_error(errc::io_error, "cannot write " + path.string());
  std::vector<char> buf(1 << 20);
  while (n > 0) {
    auto chunk = static_cast<std::streamsize>(std::min<std::int64_t>(n, static_cast<std::int64_t>(buf.size())));
    in.read(buf.data(), chunk);
    if (in.gcount() != chunk) return make_error(errc::invalid_argument, "not a valid bundle: it is truncated");
    out.write(buf.data(), chunk);
    n -= chunk;
  }
  out.flush();
  if (!out) return make_error(errc::io_error, "cannot write " + path.string() + " (disk full?)");
  return {};
}

}  // namespace

void node::impl::export_bundle(json const& req, net::local_http_server::responder respond) {
  auto s = parse_address(req.value("address", ""));
  if (!s) return respond(json_error(400, s.err().message));
  auto file = fs::path(req.value("file", ""));
  if (file.empty() || !file.is_absolute()) return respond(json_error(400, "the bundle file must be an absolute path"));
  bool all = req.value("all", false);
  auto snap = load_site(*s);
  if (!snap.record || snap.record->version == 0) return respond(json_error(404, "no complete version of " + s->address() + " here"));
  auto newest = snap.record->version;
  if (!snap.pointer || snap.pointer->seq != newest)
    return respond(json_error(409, "the newest signed pointer is for version " + std::to_string(snap.pointer ? snap.pointer->seq : 0) +
                                       ", still being fetched; export once it is complete"));
  struct section {
    bundle_manifest m;
    fs::path root;
  };
  std::vector<section> sections;
  json skipped = json::array();
  for (auto const& v : snap.versions) {
    if (!v.complete || v.seq > newest || (!all && v.seq != newest)) continue;
    std::optional<crypto::signed_item> pointer;
    if (v.seq == newest) {
      pointer = snap.pointer;
    } else {
      (void)store->read([&](storage::txn& t) -> status {
        if (auto b = t.get_blob(pointer_space, pointer_id(*s, v.seq)); b && *b)
          if (auto item = crypto::decode_item(**b)) pointer = std::move(*item);
        return {};
      });
    }
    if (!pointer) {
      skipped.push_back({{"version", v.seq}, {"reason", "its signed pointer was not kept (held since before this node kept one per version)"}});
      continue;
    }
    if (v.seq != newest && published_in_place(*s, v.seq)) {
      skipped.push_back({{"version", v.seq}, {"reason", "published with --no-copy: its files are a newer version's now"}});
      continue;
    }
    auto torrent_path = version_dir(*s, v.seq).string() + ".torrent";
    auto torrent = crypto::read_small_file(torrent_path, 64 << 20);
    if (!torrent) {
      // Mirrored versions made before .torrent files were kept: take it from the swarm.
      auto t = session->torrent_file(v.ih2);
      if (!t) {
        if (v.seq == newest)
          return respond(json_error(500, "cannot find the metadata of version " + std::to_string(v.seq) + ": " + t.err().message));
        skipped.push_back({{"version", v.seq}, {"reason", "its metadata is missing: " + t.err().message}});
        continue;
      }
      torrent = *t;
      (void)crypto::write_private_file(torrent_path, *torrent, true);
    }
    sections.push_back({bundle_manifest{s->key, s->site, {*pointer}, v.seq, *torrent}, version_dir(*s, v.seq)});
  }
  if (sections.empty() || sections.back().m.seq != newest)
    return respond(json_error(500, "version " + std::to_string(newest) + " of " + s->address() + " is not on record here"));
  (void)store->read([&](storage::txn& t) -> status {
    auto notices = t.list_notices(s->key);
    if (!notices) return notices.err();
    auto first = notices->size() > max_bundle_notices ? notices->size() - max_bundle_notices : 0;
    for (auto i = first; i < notices->size(); ++i) sections.back().m.records.push_back((*notices)[i]);
    return {};
  });
  asio::post(workers, [this, sections = std::move(sections), skipped, file, address = s->address(), respond = std::move(respond)]() mutable {
    auto write = [&]() -> result<std::int64_t> {
      auto tmp = file;
      tmp += ".part";
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) return make_error(errc::io_error, "cannot write " + tmp.string());
      std::int64_t total = 0;
      for (auto const& sec : sections) {
        auto files = net::torrent_files(sec.m.torrent);
        if (!files) return files.err();
        auto manifest = encode_bundle_manifest(sec.m);
        out << bundle_magic << manifest.size() << '\n' << manifest;
        for (auto const& [path, size] : *files) {
          std::ifstream in(sec.root / path, std::ios::binary);
          if (!in) return make_error(errc::io_error, "cannot read " + (sec.root / path).string());
          if (size > 0) out << in.rdbuf();
          total += size;
        }
      }
      out.flush();
      if (!out) return make_error(errc::io_error, "cannot write " + tmp.string() + " (disk full?)");
      out.close();
      std::error_code ec;
      fs::rename(tmp, file, ec);
      if (ec) return make_error(errc::io_error, "cannot move the bundle into place: " + ec.message());
      return total;
    };
    auto written = write();
    if (!written) {
      std::error_code ec;
      fs::remove(fs::path(file.string() + ".part"), ec);
    }
    asio::post(ioc, [this, written, sections = std::move(sections), skipped, file, address, respond = std::move(respond)] {
      if (!written) return respond(json_error(500, written.err().message));
      json versions = json::array();
      std::size_t records = 0;
      for (auto const& sec : sections) {
        versions.push_back(sec.m.seq);
        records += sec.m.records.size();
      }
      log.info("bundles", "exported " + address + " version" + (sections.size() > 1 ? "s " : " ") + versions.dump() + " to " + file.string());
      respond(json_response(200, {{"address", address}, {"version", sections.back().m.seq}, {"versions", versions}, {"skipped", skipped},
                                  {"file", file.string()}, {"bytes", *written}, {"records", records}}));
    });
  });
}

void node::impl::import_bundle(json const& req, net::local_http_server::responder respond) {
  auto file = fs::path(req.value("file", ""));
  if (file.empty() || !file.is_absolute()) return respond(json_error(400, "the bundle file must be an absolute path"));
  auto staging_parent = cfg.home / "sites" / ".import";
  asio::post(workers, [this, file, staging_parent, respond = std::move(respond)]() mutable {
    std::error_code ec;
    auto staging = staging_parent / std::to_string(std::random_device{}());
    // Everything up to the moment every version's files are verified: any error leaves nothing
    // behind.
    auto check = [&]() -> result<std::vector<staged_version>> {
      auto size = fs::file_size(file, ec);
      if (ec) return make_error(errc::not_found, "cannot read " + file.string() + ": " + ec.message());
      std::ifstream in(file, std::ios::binary);
      if (!in) return make_error(errc::not_found, "cannot read " + file.string());
      std::vector<staged_version> out;
      std::uintmax_t pos = 0;
      while (pos < size || out.empty()) {
        if (out.size() == max_bundle_sections)
          return make_error(errc::invalid_argument, "not a valid bundle: more than " + std::to_string(max_bundle_sections) + " versions");
        in.clear();
        in.seekg(static_cast<std::streamoff>(pos));
        std::string head(static_cast<std::size_t>(std::min<std::uintmax_t>(size - pos, max_bundle_manifest + 64)), '\0');
        in.read(head.data(), static_cast<std::streamsize>(head.size()));
        std::size_t offset = 0;
        auto m = read_bundle_head(head, offset);
        if (!m) return m.err();
        if (!out.empty() && (m->key != out.front().m.key || m->site != out.front().m.site || m->seq <= out.back().m.seq))
          return make_error(errc::invalid_argument, "not a valid bundle: its versions are not of one site, oldest first");
        if (m->records.empty()) return make_error(errc::invalid_argument, "not a valid bundle: no signed pointer");
        auto const& ptr = m->records.front();
        if (ptr.key != m->key || ptr.salt != m->site || ptr.seq != m->seq)
          return make_error(errc::invalid_argument, "not a valid bundle: the pointer is for another site or version");
        if (auto ok = crypto::verify_item(ptr); !ok) return make_error(errc::bad_signature, "the signed pointer does not verify: " + ok.err().message);
        auto p = crypto::decode_pointer(ptr.value);
        if (!p) return make_error(errc::invalid_argument, "the signed pointer is unreadable: " + p.err().message);
        auto summary = net::check_torrent(m->torrent, p->size + (std::int64_t(1) << 20));
        if (!summary) return summary.err();
        if (summary->ih2 != p->ih2) return make_error(errc::bad_signature, "the metadata is not the version the publisher signed");
        auto files = net::torrent_files(m->torrent);
        if (!files) return files.err();
        std::int64_t total = 0;
        for (auto const& f : *files) total += f.second;
        if (static_cast<std::int64_t>(size - pos - offset) < total) return make_error(errc::invalid_argument, "not a valid bundle: it is truncated");
        in.clear();
        in.seekg(static_cast<std::streamoff>(pos + offset));
        auto dir = staging / std::to_string(m->seq);
        for (auto const& [path, fsize] : *files)
          if (auto st = copy_out(in, dir / path, fsize); !st) return st.err();
        if (auto st = net::verify_files(m->torrent, dir); !st) return st.err();
        pos += offset + static_cast<std::uintmax_t>(total);
        out.push_back({std::move(*m), *p, dir});
      }
      return out;
    };
    auto checked = check();
    if (!checked) fs::remove_all(staging, ec);
    asio::post(ioc, [this, checked = std::move(checked), staging, file, respond = std::move(respond)]() mutable {
      if (!checked) {
        log.warn("bundles", "refused " + file.string() + ": " + checked.err().message);
        auto code = checked.err().code == errc::not_found ? 404 : 422;
        return respond(json_error(code, "refused " + file.string() + ": " + checked.err().message + " (nothing was imported)"));
      }
      auto r = finish_import(*checked);
      std::error_code ec;
      fs::remove_all(staging, ec);  // what finish_import did not move into place
      respond(std::move(r));
    });
  });
}

net::http_response node::impl::finish_import(std::vector<staged_version> const& versions) {
  auto const& newest = versions.back();
  site_id s{newest.m.key, newest.m.site};
  auto snap = load_site(s);
  auto held = snap.record ? snap.record->version : 0;
  json out = {{"address", s.address()}, {"version", newest.m.seq}};
  json imported = json::array();
  std::int64_t bytes = 0;
  auto role = snap.record ? snap.record->role : storage::site_role::followed;
  auto added = snap.record ? snap.record->added : now_unix();
  for (auto const& v : versions) {
    if (v.m.seq <= held) continue;  // this node holds it, or a newer one
    // A fetch of this version (or an older one) in progress gives way to the verified files.
    for (auto it = fetching.begin(); it != fetching.end();) {
      if (it->second.site == s && it->second.seq <= v.m.seq) {
        session->remove_version(it->first, true);
        it = fetching.erase(it);
      } else {
        ++it;
      }
    }
    if (auto q = queued_fetches.find(s); q != queued_fetches.end() && q->second.first <= v.m.seq) drop_queued_fetch(s);
    std::error_code ec;
    auto dir = version_dir(s, v.m.seq);
    fs::remove_all(dir, ec);
    fs::create_directories(dir.parent_path(), ec);
    fs::rename(v.dir, dir, ec);
    if (ec) return json_error(500, "cannot move the imported files into place: " + ec.message());
    if (auto st = crypto::write_private_file(dir.string() + ".torrent", v.m.torrent, true); !st) return json_error(500, st.err().message);
    auto st = store->write([&](storage::txn& t) -> status {
      storage::site_record rec{s.key, s.site, role, v.m.seq, added};
      if (auto e = t.put_site(rec); !e) return e;
      if (auto e = t.put_blob(pointer_space, pointer_id(s, v.m.seq), crypto::encode_item(v.m.records.front())); !e) return e;
      return t.put_version({s.key, s.site, v.m.seq, v.p.ih2, v.p.size, v.p.time, true});
    });
    if (!st) return json_error(500, "cannot record the imported version: " + st.err().message);
    net::version_spec spec;
    spec.ih2 = v.p.ih2;
    spec.save_path = dir;
    spec.torrent = v.m.torrent;
    spec.seed = true;  // every file was just hashed against the signed version
    apply_site_rates(snap, spec);
    if (auto a = session->add_version(spec); !a) return json_error(500, a.err().message);
    seeding[v.p.ih2] = s;
    held = v.m.seq;
    imported.push_back(v.m.seq);
    bytes += v.p.size;
  }
  start_queued_fetches();
  // The newest pointer and the notices enter as any signed record does; older pointers are kept
  // with their versions only (accepting them would count as replays of an older seq).
  for (auto const& r : newest.m.records) (void)accept_record(r, "bundle");
  if (imported.empty()) {
    out["imported"] = false;
    out["note"] = "this node already holds version " + std::to_string(held);
    return json_response(200, out);
  }
  ensure_beacon(s.key);
  prune_versions(s);
  refresh_view();
  session->put_item(newest.m.records.front());
  auto notices = newest.m.records.size() - 1;
  log.info("bundles", "imported " + s.address() + " version" + (imported.size() > 1 ? "s " : " ") + imported.dump() + " (" +
                          std::to_string(bytes) + " bytes, " + std::to_string(notices) + " notices), verified against the publisher's key");
  out["imported"] = true;
  out["versions"] = imported;
  out["bytes"] = bytes;
  out["notices"] = notices;
  return json_response(200, out);
}

}  // namespace outlast::node
