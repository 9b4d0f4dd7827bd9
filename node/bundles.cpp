// Offline bundles (node/bundle.hpp): export a site to one file, import one. An import becomes
// visible only after the pointer's signature, the torrent's info-hash and every file's merkle
// root check out; a tampered or truncated bundle leaves nothing behind.
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
  auto snap = load_site(*s);
  if (!snap.record || snap.record->version == 0) return respond(json_error(404, "no complete version of " + s->address() + " here"));
  auto seq = snap.record->version;
  if (!snap.pointer || snap.pointer->seq != seq)
    return respond(json_error(409, "the newest signed pointer is for version " + std::to_string(snap.pointer ? snap.pointer->seq : 0) +
                                       ", still being fetched; export once it is complete"));
  auto torrent_path = version_dir(*s, seq).string() + ".torrent";
  auto torrent = crypto::read_small_file(torrent_path, 64 << 20);
  if (!torrent) {
    // Mirrored versions made before .torrent files were kept: take it from the swarm.
    net::info_hash2 ih{};
    for (auto const& v : snap.versions)
      if (v.seq == seq) ih = v.ih2;
    auto t = session->torrent_file(ih);
    if (!t) return respond(json_error(500, "cannot find the metadata of version " + std::to_string(seq) + ": " + t.err().message));
    torrent = *t;
    (void)crypto::write_private_file(torrent_path, *torrent, true);
  }
  bundle_manifest m{s->key, s->site, {*snap.pointer}, seq, *torrent};
  (void)store->read([&](storage::txn& t) -> status {
    auto notices = t.list_notices(s->key);
    if (!notices) return notices.err();
    auto first = notices->size() > max_bundle_notices ? notices->size() - max_bundle_notices : 0;
    for (auto i = first; i < notices->size(); ++i) m.records.push_back((*notices)[i]);
    return {};
  });
  auto root = version_dir(*s, seq);
  asio::post(workers, [this, m = std::move(m), root, file, address = s->address(), respond = std::move(respond)]() mutable {
    auto write = [&]() -> result<std::int64_t> {
      auto files = net::torrent_files(m.torrent);
      if (!files) return files.err();
      auto tmp = file;
      tmp += ".part";
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) return make_error(errc::io_error, "cannot write " + tmp.string());
      auto manifest = encode_bundle_manifest(m);
      out << bundle_magic << manifest.size() << '\n' << manifest;
      std::int64_t total = 0;
      for (auto const& [path, size] : *files) {
        std::ifstream in(root / path, std::ios::binary);
        if (!in) return make_error(errc::io_error, "cannot read " + (root / path).string());
        out << in.rdbuf();
        total += size;
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
    asio::post(ioc, [this, written, m = std::move(m), file, address, respond = std::move(respond)] {
      if (!written) return respond(json_error(500, written.err().message));
      log.info("bundles", "exported " + address + " version " + std::to_string(m.seq) + " to " + file.string());
      respond(json_response(200, {{"address", address}, {"version", m.seq}, {"file", file.string()}, {"bytes", *written},
                                  {"records", m.records.size()}}));
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
    // Everything up to the moment the files are verified: any error leaves nothing behind.
    auto check = [&]() -> result<std::pair<bundle_manifest, crypto::pointer>> {
      auto size = fs::file_size(file, ec);
      if (ec) return make_error(errc::not_found, "cannot read " + file.string() + ": " + ec.message());
      std::ifstream in(file, std::ios::binary);
      if (!in) return make_error(errc::not_found, "cannot read " + file.string());
      std::string head(static_cast<std::size_t>(std::min<std::uintmax_t>(size, max_bundle_manifest + 64)), '\0');
      in.read(head.data(), static_cast<std::streamsize>(head.size()));
      std::size_t offset = 0;
      auto m = read_bundle_head(head, offset);
      if (!m) return m.err();
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
      if (static_cast<std::int64_t>(size - offset) != total)
        return make_error(errc::invalid_argument, std::string("not a valid bundle: it is ") +
                                                      (static_cast<std::int64_t>(size - offset) < total ? "truncated" : "longer than its files"));
      in.clear();
      in.seekg(static_cast<std::streamoff>(offset));
      for (auto const& [path, fsize] : *files)
        if (auto st = copy_out(in, staging / path, fsize); !st) return st.err();
      if (auto st = net::verify_files(m->torrent, staging); !st) return st.err();
      return std::make_pair(std::move(*m), *p);
    };
    auto checked = check();
    if (!checked) fs::remove_all(staging, ec);
    asio::post(ioc, [this, checked = std::move(checked), staging, file, respond = std::move(respond)]() mutable {
      if (!checked) {
        log.warn("bundles", "refused " + file.string() + ": " + checked.err().message);
        auto code = checked.err().code == errc::not_found ? 404 : 422;
        return respond(json_error(code, "refused " + file.string() + ": " + checked.err().message + " (nothing was imported)"));
      }
      respond(finish_import(checked->first, checked->second, staging));
    });
  });
}

net::http_response node::impl::finish_import(bundle_manifest const& m, crypto::pointer const& p, fs::path const& staging) {
  std::error_code ec;
  site_id s{m.key, m.site};
  auto snap = load_site(s);
  json out = {{"address", s.address()}, {"version", m.seq}};
  if (snap.record && snap.record->version >= m.seq) {
    fs::remove_all(staging, ec);
    for (auto const& r : m.records) (void)accept_record(r, "bundle");
    out["imported"] = false;
    out["note"] = "this node already holds version " + std::to_string(snap.record->version);
    return json_response(200, out);
  }
  // A fetch of this version (or an older one) in progress gives way to the verified files.
  for (auto it = fetching.begin(); it != fetching.end();) {
    if (it->second.site == s && it->second.seq <= m.seq) {
      session->remove_version(it->first, true);
      it = fetching.erase(it);
    } else {
      ++it;
    }
  }
  if (auto q = queued_fetches.find(s); q != queued_fetches.end() && q->second.first <= m.seq) drop_queued_fetch(s);
  start_queued_fetches();
  auto dir = version_dir(s, m.seq);
  fs::remove_all(dir, ec);
  fs::create_directories(dir.parent_path(), ec);
  fs::rename(staging, dir, ec);
  if (ec) {
    fs::remove_all(staging, ec);
    return json_error(500, "cannot move the imported files into place: " + ec.message());
  }
  if (auto st = crypto::write_private_file(dir.string() + ".torrent", m.torrent, true); !st) return json_error(500, st.err().message);
  auto role = snap.record ? snap.record->role : storage::site_role::followed;
  auto st = store->write([&](storage::txn& t) -> status {
    storage::site_record rec{s.key, s.site, role, m.seq, snap.record ? snap.record->added : now_unix()};
    if (auto e = t.put_site(rec); !e) return e;
    return t.put_version({s.key, s.site, m.seq, p.ih2, p.size, p.time, true});
  });
  if (!st) return json_error(500, "cannot record the imported version: " + st.err().message);
  for (auto const& r : m.records) (void)accept_record(r, "bundle");
  net::version_spec spec;
  spec.ih2 = p.ih2;
  spec.save_path = dir;
  spec.torrent = m.torrent;
  spec.seed = true;  // every file was just hashed against the signed version
  if (auto added = session->add_version(spec); !added) return json_error(500, added.err().message);
  seeding[p.ih2] = s;
  ensure_beacon(s.key);
  prune_versions(s);
  refresh_view();
  session->put_item(m.records.front());
  log.info("bundles", "imported " + s.address() + " version " + std::to_string(m.seq) + " (" + std::to_string(p.size) + " bytes, " +
                          std::to_string(m.records.size() - 1) + " notices), verified against the publisher's key");
  out["imported"] = true;
  out["bytes"] = p.size;
  out["notices"] = m.records.size() - 1;
  return json_response(200, out);
}

}  // namespace outlast::node
