// BitTorrent v2 torrents of site versions: making them, checking what a peer sent, and reusing
// the files a node already has. Blocking file work: call from a worker thread, not the node's.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "crypto/result.hpp"

namespace outlast::net {

using info_hash2 = std::array<std::uint8_t, 32>;
std::string to_hex(info_hash2 const& ih);

struct built_torrent {
  std::string torrent;  // the bencoded .torrent, piece layers included
  info_hash2 ih2{};
  std::int64_t size = 0;
  int files = 0;
  // libtorrent makes a one-file directory a single-file torrent, whose file lies directly in
  // the save path rather than under `name/`: make_torrent moves it there.
  bool single_file = false;
};

// Hashes `root/name` (a directory) into a v2-only torrent named `name` with libtorrent's own
// set_piece_hashes (two threads): the torrent libtorrent itself makes of the files, which the
// tests hold copy_and_make_torrent and hash_and_make_torrent to. A directory of one file becomes
// a single-file torrent and that file is moved up into `root`. `progress(done, total)` is called
// with bytes hashed so far. Setting `*cancel` stops early. Errors: invalid_argument (no files),
// io_error (unreadable file), unavailable (cancelled).
result<built_torrent> make_torrent(std::filesystem::path const& root, std::string const& name,
                                   std::function<void(std::int64_t, std::int64_t)> const& progress,
                                   std::atomic<bool> const* cancel = nullptr);

// A file to publish: read from `source`, placed at `relative` under the version's folder.
struct source_file {
  std::filesystem::path source;
  std::filesystem::path relative;
  std::int64_t size = 0;  // as scanned; a file that reads differently has changed: an error
  // As scanned, for a later publish to tell the file unchanged (0: not known): modification and
  // change times in nanoseconds, inode and device.
  std::int64_t mtime_ns = 0, ctime_ns = 0, inode = 0, device = 0;
  // Set when the file is known unchanged since an earlier version was copied from it:
  // copy_and_make_torrent hard-links `reuse` (that version's private copy) and takes
  // `reuse_pieces` (its piece hashes, 32 bytes each; a file of one piece: its root) instead of
  // reading and hashing it again. If the link cannot be made, the file is copied as usual.
  std::filesystem::path reuse{};
  std::string reuse_pieces{};
};

// The piece hashes of each file of a directory torrent made by copy_and_make_torrent, by its path
// inside the site (as source_file::relative): the piece layer, or the root of a file of one
// piece. Empty for a single-file torrent. Errors: corrupt.
result<std::map<std::string, std::string>> piece_hashes(std::string const& torrent);

// The cores this process may run on (taskset, a container's cpuset), not all the machine's.
int usable_cores();

// Publishing in one pass: copies `files` under `root/name` (hard-links those with `reuse`) and
// builds the same v2 torrent as make_torrent would of the copy, hashing each block while it is in memory between the read and
// the write, on `threads` threads (0: four per usable core, at most 16: each waits on its own
// write to the device, so the device has several at once while the cores hash; largest first, a
// file over 32 pieces shared out in runs of 32).
// Files of a piece or more are written with O_DIRECT where the filesystem allows it. A site of one file at its top becomes a
// single-file torrent, the file placed directly in `root`, as make_torrent does. The copy is on
// disk (syncfs) before this returns. `progress(done, total)`: bytes copied and hashed.
// Errors: io_error (unreadable source, disk full), invalid_argument (no files, or a file changed
// while it was read), unavailable (cancelled).
result<built_torrent> copy_and_make_torrent(std::vector<source_file> const& files, std::filesystem::path const& root,
                                            std::string const& name, std::function<void(std::int64_t, std::int64_t)> const& progress,
                                            std::atomic<bool> const* cancel = nullptr, int threads = 0);

// The torrent copy_and_make_torrent would make of `files`, built where they are (publish
// --no-copy: the version is seeded from the publisher's own directory): each file read once and
// hashed on `threads` threads (0: one per usable core), nothing written, `reuse` ignored.
// `progress(done, total)`: bytes hashed. Errors: io_error (unreadable file), invalid_argument (no
// files, or a file changed while it was read), unavailable (cancelled).
result<built_torrent> hash_and_make_torrent(std::vector<source_file> const& files, std::string const& name,
                                            std::function<void(std::int64_t, std::int64_t)> const& progress,
                                            std::atomic<bool> const* cancel = nullptr, int threads = 0);

// A publisher's beacon: a one-file torrent that every node holding any of that publisher's sites
// seeds, whatever versions it has. Its content (and so its info-hash) depends only on the key,
// so all of them meet in one swarm that outlives version changes: the push path's meeting place.
// Writes the file into `dir` if it is not there. Errors: io_error.
result<built_torrent> make_beacon(std::filesystem::path const& dir, std::string const& key_text);

struct torrent_summary {
  info_hash2 ih2{};
  std::int64_t size = 0;
  int files = 0;
  std::string name;
};

// Parses a .torrent and checks everything a peer controls: v2 present and v1 absent, file paths
// relative, no "..", no empty or control-character names, valid UTF-8, no symlinks, sizes
// bounded. Errors: corrupt (with the offending path).
result<torrent_summary> check_torrent(std::string const& torrent, std::int64_t max_size);

// The files a torrent lists, in its order, pad files left out: (path under the save path, size).
// Errors: corrupt.
result<std::vector<std::pair<std::string, std::int64_t>>> torrent_files(std::string const& torrent);

// Hashes the files under `save_path` that `torrent` lists and compares each file's merkle root
// with the torrent's: true only if every file is present, of its size, with its content.
// Blocking (hashes everything). Errors: corrupt (the torrent, or the first file that differs,
// named), io_error.
status verify_files(std::string const& torrent, std::filesystem::path const& save_path);

// The .torrent of a complete version, piece layers included, built from the resume data
// libtorrent saved for it (its info dict and merkle trees; session::torrent_file asks libtorrent
// instead, which costs its network thread ~1.5 s of hashing on a 5,201-file version). Each piece
// layer is checked against its file's root, and the info dict against `expect`.
// Errors: corrupt (resume data without the info dict or a hash a layer needs).
result<std::string> torrent_from_resume(std::string const& resume, info_hash2 const& expect);

// Hard-links into `new_root` every file of `new_torrent` whose merkle root equals that of a file
// of `old_torrent` already complete under `old_root` (whatever its path). Returns bytes placed.
// Used before a new version is checked, so unchanged files are not transferred again.
result<std::int64_t> place_unchanged_files(std::string const& old_torrent, std::filesystem::path const& old_root,
                                           std::string const& new_torrent, std::filesystem::path const& new_root);

}  // namespace outlast::net
