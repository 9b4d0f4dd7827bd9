#include "net/torrents.hpp"

#include <libtorrent/create_torrent.hpp>
#include <fstream>
#include <libtorrent/hex.hpp>
#include <libtorrent/settings_pack.hpp>
#include <libtorrent/torrent_info.hpp>

#include <limits>
#include <map>

#include "crypto/records.hpp"
#include "net/detail/torrent_checks.hpp"

namespace outlast::net {

namespace fs = std::filesystem;

std::string to_hex(info_hash2 const& ih) {
  return lt::aux::to_hex({reinterpret_cast<char const*>(ih.data()), static_cast<std::ptrdiff_t>(ih.size())});
}

namespace detail {

info_hash2 v2_of(lt::torrent_info const& ti) {
  info_hash2 out;
  auto const& h = ti.info_hashes().v2;
  std::copy(h.begin(), h.end(), out.begin());
  return out;
}

result<torrent_summary> check_info(lt::torrent_info const& ti, std::int64_t max_size) {
  if (!ti.info_hashes().has_v2()) return make_error(errc::corrupt, "not a v2 torrent");
  torrent_summary out{v2_of(ti), 0, 0, ti.name()};
  if (ti.info_hashes().has_v1()) return make_error(errc::corrupt, "hybrid (v1+v2) torrents are not accepted");
  auto const& fst = ti.files();
  for (auto i : fst.file_range()) {
    auto path = fst.file_path(i);
    if (fst.file_flags(i) & lt::file_storage::flag_symlink) return make_error(errc::corrupt, "torrent holds a symlink: " + path);
    if (fst.pad_file_at(i)) continue;
    if (path.empty() || path.front() == '/') return make_error(errc::corrupt, "torrent holds an absolute or empty path");
    if (!crypto::valid_utf8(path)) return make_error(errc::corrupt, "torrent holds a file name that is not UTF-8");
    for (auto const& part : fs::path(path)) {
      auto p = part.string();
      if (p.empty() || p == "." || p == "..") return make_error(errc::corrupt, "torrent holds a path escaping its folder: " + path);
      for (unsigned char c : p)
        if (c < 0x20 || c == 0x7f) return make_error(errc::corrupt, "torrent holds a file name with control characters");
    }
    out.size += fst.file_size(i);
    ++out.files;
  }
  // v2 aligns files to pieces with pad files; only real bytes count against the limit.
  if (out.size > max_size)
    return make_error(errc::corrupt, "the version is " + std::to_string(out.size) + " bytes, over the limit of " + std::to_string(max_size));
  return out;
}

std::int64_t place_unchanged(lt::torrent_info const& old_ti, fs::path const& old_root, lt::torrent_info const& new_ti,
                             fs::path const& new_root) {
  std::map<lt::sha256_hash, fs::path> have;
  auto const& of = old_ti.files();
  for (auto i : of.file_range())
    if (!of.pad_file_at(i) && of.file_size(i) > 0) have.emplace(of.root(i), old_root / of.file_path(i));
  std::int64_t placed = 0;
  auto const& nf = new_ti.files();
  for (auto i : nf.file_range()) {
    if (nf.pad_file_at(i) || nf.file_size(i) == 0) continue;
    auto it = have.find(nf.root(i));
    if (it == have.end()) continue;
    auto dest = new_root / nf.file_path(i);
    std::error_code ec;
    if (fs::exists(dest, ec)) continue;
    if (fs::file_size(it->second, ec) != static_cast<std::uintmax_t>(nf.file_size(i)) || ec) continue;
    fs::create_directories(dest.parent_path(), ec);
    fs::create_hard_link(it->second, dest, ec);
    if (ec) {
      ec.clear();
      fs::copy_file(it->second, dest, ec);  // another filesystem: copy instead
    }
    if (!ec) placed += nf.file_size(i);
  }
  return placed;
}

}  // namespace detail

namespace {
using detail::v2_of;

// Throws on malformed input (libtorrent's parser reports errors by exception here).
std::shared_ptr<lt::torrent_info> parse(std::string const& torrent) {
  lt::load_torrent_limits limits;
  limits.max_buffer_size = 64 << 20;
  limits.max_pieces = 0x800000;
  return std::make_shared<lt::torrent_info>(lt::span<char const>(torrent.data(), static_cast<std::ptrdiff_t>(torrent.size())),
                                            limits, lt::from_span);
}

}  // namespace

result<built_torrent> make_torrent(fs::path const& root, std::string const& name,
                                   std::function<void(std::int64_t, std::int64_t)> const& progress,
                                   std::atomic<bool> const* cancel) {
  lt::file_storage files;
  lt::add_files(files, (root / name).string(), [](std::string const&) { return true; }, {});
  if (files.num_files() == 0) return make_error(errc::invalid_argument, "there are no files to publish");
  // A directory holding one file at its top would make a "file tree" of one top-level entry,
  // which libtorrent 2.0.8 loads as a single-file torrent at a different path than it wrote.
  // Make it a proper single-file torrent instead, with the file directly under `root`.
  bool single_file = false;
  if (files.num_files() == 1) {
    auto only = fs::path(files.file_path(lt::file_index_t{0}));
    if (std::distance(only.begin(), only.end()) == 2) {
      std::error_code ec;
      fs::rename(root / only, root / only.filename(), ec);
      if (ec) return make_error(errc::io_error, "cannot place the single file: " + ec.message());
      fs::remove(root / name, ec);
      files = lt::file_storage();
      lt::add_files(files, (root / only.filename()).string(), [](std::string const&) { return true; }, {});
      single_file = true;
    }
  }
  // 1 MiB pieces move fastest on loopback and keep piece layers small (shared/libtorrent-notes.md).
  lt::create_torrent ct(files, 1 << 20, lt::create_torrent::v2_only);
  ct.set_creator("outlast");
  lt::settings_pack settings;
  settings.set_int(lt::settings_pack::hashing_threads, 2);
  std::int64_t total = files.total_size();
  std::int64_t piece = ct.piece_length();
  std::atomic<std::int64_t> done{0};
  lt::error_code ec;
  // Cancelling is checked after hashing, not by throwing through libtorrent's hasher: hashing
  // runs at about 1 GB/s, so a stop waits a second or two at most.
  lt::set_piece_hashes(ct, root.string(), settings, [&](lt::piece_index_t) {
    auto d = std::min(total, done += piece);
    if (progress) progress(d, total);
  }, ec);
  if (ec) return make_error(errc::io_error, "cannot hash the files: " + ec.message());
  if (cancel && cancel->load()) return make_error(errc::unavailable, "publishing was cancelled");
  built_torrent out;
  auto e = ct.generate();
  lt::bencode(std::back_inserter(out.torrent), e);
  auto ti = parse(out.torrent);
  auto summary = detail::check_info(*ti, std::numeric_limits<std::int64_t>::max());
  if (!summary) return summary.err();
  out.ih2 = summary->ih2;
  out.size = summary->size;
  out.files = summary->files;
  out.single_file = single_file;
  if (progress) progress(total, total);
  return out;
}

result<built_torrent> make_beacon(fs::path const& dir, std::string const& key_text) {
  auto name = "outlast-publisher-" + key_text;
  auto content = "Outlast publisher " + key_text + "\n";
  std::error_code fec;
  fs::create_directories(dir, fec);
  if (fec) return make_error(errc::io_error, "cannot create " + dir.string() + ": " + fec.message());
  {
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) return make_error(errc::io_error, "cannot write " + (dir / name).string());
  }
  lt::file_storage files;
  files.add_file(name, static_cast<std::int64_t>(content.size()));
  lt::create_torrent ct(files, 1 << 20, lt::create_torrent::v2_only);
  lt::error_code ec;
  lt::set_piece_hashes(ct, dir.string(), ec);
  if (ec) return make_error(errc::io_error, "cannot hash the beacon: " + ec.message());
  built_torrent out;
  auto e = ct.generate();
  lt::bencode(std::back_inserter(out.torrent), e);
  auto ti = parse(out.torrent);
  auto summary = detail::check_info(*ti, 1 << 20);
  if (!summary) return summary.err();
  out.ih2 = summary->ih2;
  out.size = summary->size;
  out.files = 1;
  out.single_file = true;
  return out;
}

result<std::vector<std::pair<std::string, std::int64_t>>> torrent_files(std::string const& torrent) {
  std::shared_ptr<lt::torrent_info> ti;
  try {
    ti = parse(torrent);
  } catch (std::exception const& e) {
    return make_error(errc::corrupt, std::string("malformed torrent: ") + e.what());
  }
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (auto i : ti->files().file_range())
    if (!ti->files().pad_file_at(i)) out.emplace_back(ti->files().file_path(i), ti->files().file_size(i));
  return out;
}

status verify_files(std::string const& torrent, fs::path const& save_path) {
  std::shared_ptr<lt::torrent_info> ti;
  try {
    ti = parse(torrent);
  } catch (std::exception const& e) {
    return make_error(errc::corrupt, std::string("malformed torrent: ") + e.what());
  }
  auto const& want = ti->files();
  lt::file_storage fs;
  std::map<std::string, lt::sha256_hash> roots;
  for (auto i : want.file_range()) {
    if (want.pad_file_at(i)) continue;
    auto path = want.file_path(i);
    std::error_code ec;
    auto size = fs::file_size(save_path / path, ec);
    if (ec) return make_error(errc::corrupt, "missing file " + path);
    if (static_cast<std::int64_t>(size) != want.file_size(i)) return make_error(errc::corrupt, "wrong size: " + path);
    fs.add_file(path, want.file_size(i));
    roots[path] = want.root(i);
  }
  if (fs.num_files() == 0) return make_error(errc::corrupt, "the torrent lists no files");
  lt::create_torrent ct(fs, ti->piece_length(), lt::create_torrent::v2_only);
  lt::error_code ec;
  lt::settings_pack settings;
  settings.set_int(lt::settings_pack::hashing_threads, 2);
  lt::set_piece_hashes(ct, save_path.string(), settings, [](lt::piece_index_t) {}, ec);
  if (ec) return make_error(errc::io_error, "cannot hash the files: " + ec.message());
  std::string bytes;
  lt::bencode(std::back_inserter(bytes), ct.generate());
  auto got = parse(bytes);
  for (auto i : got->files().file_range()) {
    if (got->files().pad_file_at(i)) continue;
    auto path = got->files().file_path(i);
    auto it = roots.find(path);
    if (it == roots.end() || it->second != got->files().root(i)) return make_error(errc::corrupt, "content differs from the signed version: " + path);
  }
  return {};
}

result<torrent_summary> check_torrent(std::string const& torrent, std::int64_t max_size) {
  std::shared_ptr<lt::torrent_info> ti;
  try {
    ti = parse(torrent);
  } catch (std::exception const& e) {
    return make_error(errc::corrupt, std::string("malformed torrent: ") + e.what());
  }
  return detail::check_info(*ti, max_size);
}

result<std::int64_t> place_unchanged_files(std::string const& old_torrent, fs::path const& old_root,
                                           std::string const& new_torrent, fs::path const& new_root) {
  std::shared_ptr<lt::torrent_info> old_ti, new_ti;
  try {
    old_ti = parse(old_torrent);
    new_ti = parse(new_torrent);
  } catch (std::exception const& e) {
    return make_error(errc::corrupt, std::string("malformed torrent: ") + e.what());
  }
  return detail::place_unchanged(*old_ti, old_root, *new_ti, new_root);
}

}  // namespace outlast::net
