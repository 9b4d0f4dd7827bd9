#include "net/torrents.hpp"

#include <fcntl.h>
#include <sched.h>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/hex.hpp>
#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/read_resume_data.hpp>
#include <libtorrent/settings_pack.hpp>
#include <libtorrent/torrent_info.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unistd.h>

#include "crypto/records.hpp"
#include "net/detail/small_files.hpp"
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

std::string torrent_bytes(lt::torrent_info const& ti, lt::entry::dictionary_type piece_layers) {
  lt::entry t(lt::entry::dictionary_t);
  auto const info = ti.info_section();
  t["info"] = lt::entry::preformatted_type(info.begin(), info.end());
  if (!piece_layers.empty()) t["piece layers"] = std::move(piece_layers);
  std::string out;
  lt::bencode(std::back_inserter(out), t);
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

placement place_unchanged(lt::torrent_info const& old_ti, fs::path const& old_root, lt::torrent_info const& new_ti,
                          fs::path const& new_root) {
  std::map<lt::sha256_hash, std::pair<lt::file_index_t, fs::path>> have;
  auto const& of = old_ti.files();
  for (auto i : of.file_range())
    if (!of.pad_file_at(i) && of.file_size(i) > 0) have.emplace(of.root(i), std::pair{i, old_root / of.file_path(i)});
  placement out;
  auto const& nf = new_ti.files();
  for (auto i : nf.file_range()) {
    if (nf.pad_file_at(i) || nf.file_size(i) == 0) continue;
    auto it = have.find(nf.root(i));
    if (it == have.end()) continue;
    auto const& [old_file, source] = it->second;
    auto dest = new_root / nf.file_path(i);
    std::error_code ec;
    if (fs::exists(dest, ec)) continue;
    if (fs::file_size(source, ec) != static_cast<std::uintmax_t>(nf.file_size(i)) || ec) continue;
    fs::create_directories(dest.parent_path(), ec);
    fs::create_hard_link(source, dest, ec);
    if (ec) {
      ec.clear();
      fs::copy_file(source, dest, ec);  // another filesystem: copy instead
    }
    if (ec) continue;
    out.bytes += nf.file_size(i);
    out.files.push_back({i, old_file});
  }
  return out;
}

}  // namespace detail

namespace {
using detail::v2_of;

// 1 MiB pieces move fastest on loopback and keep piece layers small (shared/libtorrent-notes.md).
constexpr int piece_length = 1 << 20;

// Throws on malformed input (libtorrent's parser reports errors by exception here).
std::shared_ptr<lt::torrent_info> parse(std::string const& torrent) {
  lt::load_torrent_limits limits;
  limits.max_buffer_size = 64 << 20;
  limits.max_pieces = 0x800000;
  return std::make_shared<lt::torrent_info>(lt::span<char const>(torrent.data(), static_cast<std::ptrdiff_t>(torrent.size())),
                                            limits, lt::from_span);
}

// parse() for bytes from outside (the store, a peer, a file): a malformed torrent is an error.
result<std::shared_ptr<lt::torrent_info>> parse_checked(std::string const& torrent) {
  try {
    return parse(torrent);
  } catch (std::exception const& e) {
    return make_error(errc::corrupt, std::string("malformed torrent: ") + e.what());
  }
}

// The .torrent of a hashed create_torrent, read back through the same checks a peer's gets.
result<built_torrent> finish_torrent(lt::create_torrent& ct, bool single_file) {
  built_torrent out;
  lt::bencode(std::back_inserter(out.torrent), ct.generate());
  auto ti = parse(out.torrent);
  auto summary = detail::check_info(*ti, std::numeric_limits<std::int64_t>::max());
  if (!summary) return summary.err();
  out.ih2 = summary->ih2;
  out.size = summary->size;
  out.files = summary->files;
  out.single_file = single_file;
  return out;
}

}  // namespace

result<built_torrent> make_torrent(fs::path const& root, std::string const& name,
                                   std::function<void(std::int64_t, std::int64_t)> const& progress,
                                   std::atomic<bool> const* cancel) {
  lt::file_storage files;
  auto top = fs::absolute(root / name).lexically_normal().string();
  lt::add_files(files, top);
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
  lt::create_torrent ct(files, piece_length, lt::create_torrent::v2_only);
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
  if (progress) progress(total, total);
  return finish_torrent(ct, single_file);
}

namespace {

constexpr int block_size = 16 * 1024;  // BEP 52 merkle leaves

// BEP 52: the root of a layer of leaf hashes whose count is a power of two.
lt::sha256_hash merkle_root(std::vector<lt::sha256_hash> layer) {
  while (layer.size() > 1) {
    for (std::size_t i = 0; i < layer.size() / 2; ++i) {
      lt::hasher256 h;
      h.update(layer[2 * i]);
      h.update(layer[2 * i + 1]);
      layer[i] = h.final();
    }
    layer.resize(layer.size() / 2);
  }
  return layer.front();
}

int next_power_of_two(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

struct copy_job {
  source_file const* file = nullptr;
  fs::path in_torrent;  // its path in the torrent (and under `root`)
  fs::path dest;  // empty: hashed where it is, not copied
  std::vector<lt::sha256_hash> pieces;  // one per piece of the file, as set_hash2 wants them
};

// What the threads share out: a run of pieces of one file. A file larger than a run is cut into
// runs, so both threads work to the end instead of one copying the largest file alone while
// the other has finished (the standard site's 600 MB file was two thirds of the copy).
struct copy_unit {
  copy_job* job = nullptr;
  std::int64_t first = 0;  // piece index
  std::int64_t count = 0;  // pieces
};

constexpr std::int64_t run_pieces = 32;

class fd_guard {
 public:
  explicit fd_guard(int fd) : m_fd(fd) {}
  ~fd_guard() {
    if (m_fd >= 0) ::close(m_fd);
  }
  fd_guard(fd_guard const&) = delete;
  fd_guard& operator=(fd_guard const&) = delete;
  int get() const { return m_fd; }
  int close() {
    int r = ::close(m_fd);
    m_fd = -1;
    return r;
  }

 private:
  int m_fd;
};

// An unchanged file: the earlier version's copy, linked, and its hashes. False if it cannot be
// used (gone, another size, hashes that do not fit): the caller copies the file instead.
bool link_unchanged(copy_job& job, std::atomic<std::int64_t>& done) {
  auto const& f = *job.file;
  if (f.reuse.empty() || f.size <= 0) return false;
  auto const pieces = job.pieces.size();  // a file of one piece: its root
  if (f.reuse_pieces.size() != pieces * lt::sha256_hash::size()) return false;
  std::error_code ec;
  auto st = fs::symlink_status(f.reuse, ec);
  if (ec || !fs::is_regular_file(st) || fs::file_size(f.reuse, ec) != static_cast<std::uintmax_t>(f.size) || ec) return false;
  fs::create_hard_link(f.reuse, job.dest, ec);
  if (ec) return false;
  for (std::size_t p = 0; p < pieces; ++p) job.pieces[p] = lt::sha256_hash(f.reuse_pieces.data() + p * lt::sha256_hash::size());
  done += f.size;
  return true;
}

// Reads up to `len` bytes at `off` (fewer only where the file ends). -1 on error (errno set).
ssize_t pread_full(int fd, char* buf, std::size_t len, std::int64_t off) {
  std::size_t got = 0;
  while (got < len) {
    ssize_t n = ::pread(fd, buf + got, len - got, static_cast<off_t>(off + static_cast<std::int64_t>(got)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return static_cast<ssize_t>(got);
}

bool pwrite_full(int fd, char const* buf, std::size_t len, std::int64_t off) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, buf, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    buf += n;
    off += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

// O_DIRECT wants buffers, offsets and lengths in whole sectors; 4 KiB covers the devices in use.
constexpr std::size_t direct_align = 4096;

// Copies a run of pieces of one file to its private copy, hashing the bytes as they are written;
// for a job without a `dest`, only reads and hashes them (the file is seeded where it is).
// A file of a piece or more is written with O_DIRECT: the copy only has to reach the disk, and
// through the page cache it would cost a second copy of every byte into memory the kernel must
// find first (on the development VM, 2-3x the time of the whole publish: docs/performance.md).
// Small files go through the page cache, where the final syncfs writes them out together.
// Where O_DIRECT is refused (a filesystem without it, a device wanting larger sectors), the
// file is written through the page cache instead.
status copy_and_hash(copy_unit const& u, std::int64_t piece_size, char* buf, std::atomic<std::int64_t>& done,
                     std::atomic<bool> const* cancel) {
  auto& job = *u.job;
  bool const copy = !job.dest.empty();
  auto const& f = *job.file;
  auto const all = static_cast<std::int64_t>(job.pieces.size());
  bool const whole = u.first == 0 && u.count == all;
  if (copy && whole && link_unchanged(job, done)) return {};
  auto cannot = [&](char const* what, fs::path const& path) {
    return make_error(errc::io_error, std::string("cannot ") + what + " " + path.string() + ": " + std::strerror(errno));
  };
  auto changed = [&] { return make_error(errc::invalid_argument, f.relative.string() + " changed while it was being published; try again"); };
  fd_guard in(::open(f.source.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return cannot("read", f.source);
  if (f.size > piece_size) ::posix_fadvise(in.get(), u.first * piece_size, u.count * piece_size, POSIX_FADV_SEQUENTIAL);
  // A file cut into runs was created before the threads started; each run writes its own range.
  fd_guard out(copy ? ::open(job.dest.c_str(), O_WRONLY | O_CREAT | (whole ? O_TRUNC : 0) | O_CLOEXEC, 0644) : -1);
  if (copy && out.get() < 0) return cannot("write", job.dest);
  fd_guard direct(copy && f.size >= piece_size ? ::open(job.dest.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC) : -1);
  bool use_direct = direct.get() >= 0, padded = false;
  // A file of one piece or less has its own tree, padded to a power of two of blocks; longer
  // files pad each piece to a whole piece of blocks (BEP 52).
  bool const one_piece = f.size <= piece_size;
  int const blocks_per_piece = static_cast<int>(piece_size / block_size);
  std::int64_t unsynced = 0;
  for (std::int64_t p = u.first; p < u.first + u.count; ++p) {
    std::int64_t const off = p * piece_size;
    auto const len = static_cast<std::size_t>(std::min(piece_size, f.size - off));
    ssize_t got = pread_full(in.get(), buf, len, off);
    if (got < 0) return cannot("read", f.source);
    if (static_cast<std::size_t>(got) < len) return changed();  // shrank
    int blocks = static_cast<int>((len + block_size - 1) / block_size);
    std::vector<lt::sha256_hash> leaves(static_cast<std::size_t>(one_piece ? next_power_of_two(blocks) : blocks_per_piece));
    for (int b = 0; b < blocks; ++b) {
      auto boff = static_cast<std::size_t>(b) * block_size;
      leaves[static_cast<std::size_t>(b)] = lt::hasher256(buf + boff, static_cast<int>(std::min<std::size_t>(block_size, len - boff))).final();
    }
    job.pieces[static_cast<std::size_t>(p)] = merkle_root(std::move(leaves));
    if (use_direct) {
      // The end of the file is written out to a whole sector of zeros, then cut back below.
      std::size_t const whole_sectors = (len + direct_align - 1) / direct_align * direct_align;
      std::memset(buf + len, 0, whole_sectors - len);
      if (pwrite_full(direct.get(), buf, whole_sectors, off)) {
        padded = padded || whole_sectors != len;
      } else if (errno == EINVAL) {
        use_direct = false;  // refused: through the page cache from here on
      } else {
        return cannot("write", job.dest);
      }
    }
    if (copy && !use_direct) {
      if (!pwrite_full(out.get(), buf, len, off)) return cannot("write", job.dest);
      // Start writing back early, so the final syncfs does not wait for all of it at once.
      if ((unsynced += static_cast<std::int64_t>(len)) >= (32 << 20)) {
        ::sync_file_range(out.get(), off + static_cast<std::int64_t>(len) - unsynced, unsynced, SYNC_FILE_RANGE_WRITE);
        unsynced = 0;
      }
    }
    done += static_cast<std::int64_t>(len);
    if (cancel && cancel->load()) return make_error(errc::unavailable, "publishing was cancelled");
  }
  if (u.first + u.count == all) {  // the run that ends the file: the file must end there
    char c;
    ssize_t more = pread_full(in.get(), &c, 1, f.size);
    if (more < 0) return cannot("read", f.source);
    if (more > 0) return changed();  // grew
    if (padded && ::ftruncate(out.get(), f.size) != 0) return cannot("write", job.dest);
  }
  if (copy && out.close() != 0) return cannot("write", job.dest);
  return {};
}

}  // namespace

int usable_cores() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

namespace {

// copy_and_make_torrent with `root` (each file copied under it), hash_and_make_torrent without
// (each file read where it is). The same torrent either way.
result<built_torrent> make_from_files(std::vector<source_file> const& files, fs::path const* root, std::string const& name,
                                      std::function<void(std::int64_t, std::int64_t)> const& progress,
                                      std::atomic<bool> const* cancel, int threads) {
  if (files.empty()) return make_error(errc::invalid_argument, "there are no files to publish");
  bool const copy = root != nullptr;
  // Same layout as make_torrent: see its comment on one-file directories.
  bool single_file = files.size() == 1 && std::distance(files[0].relative.begin(), files[0].relative.end()) == 1;
  lt::file_storage fst;
  std::vector<copy_job> jobs(files.size());
  std::int64_t total = 0;
  for (std::size_t i = 0; i < files.size(); ++i) {
    auto const& f = files[i];
    jobs[i].file = &f;
    jobs[i].in_torrent = single_file ? f.relative.filename() : fs::path(name) / f.relative;
    if (copy) jobs[i].dest = *root / jobs[i].in_torrent;
    fst.add_file(jobs[i].in_torrent.string(), f.size);
    total += f.size;
  }
  std::error_code ec;
  std::vector<copy_unit> units;
  std::set<fs::path> made_dirs;
  for (auto& j : jobs) {
    if (copy && made_dirs.insert(j.dest.parent_path()).second) fs::create_directories(j.dest.parent_path(), ec);
    if (ec) return make_error(errc::io_error, "cannot create " + j.dest.parent_path().string() + ": " + ec.message());
    auto n = (j.file->size + piece_length - 1) / piece_length;
    j.pieces.resize(static_cast<std::size_t>(n));
    if (n <= run_pieces || (copy && !j.file->reuse.empty())) {
      units.push_back({&j, 0, n});
      continue;
    }
    if (copy) {
      fd_guard made(::open(j.dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (made.get() < 0) return make_error(errc::io_error, "cannot write " + j.dest.string() + ": " + std::strerror(errno));
      // Allocated up front, the runs' O_DIRECT writes overwrite blocks the file already has, which
      // ext4 lets them do side by side (writes that allocate take the file's lock in turn).
      if (::fallocate(made.get(), 0, 0, j.file->size) != 0 && errno == ENOSPC)
        return make_error(errc::io_error, "cannot write " + j.dest.string() + ": " + std::strerror(errno));
    }
    for (std::int64_t first = 0; first < n; first += run_pieces) units.push_back({&j, first, std::min(run_pieces, n - first)});
  }
  lt::create_torrent ct(fst, piece_length, lt::create_torrent::v2_only);
  ct.set_creator("outlast");

  // Largest first, so the threads finish together.
  auto bytes = [](copy_unit const& u) { return std::min(u.count * piece_length, u.job->file->size - u.first * piece_length); };
  std::stable_sort(units.begin(), units.end(), [&](auto const& a, auto const& b) { return bytes(a) > bytes(b); });
  std::atomic<std::size_t> next{0};
  std::atomic<std::int64_t> done{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::optional<error> first_error;
  auto work = [&] {
    std::unique_ptr<char, decltype(&std::free)> buf(static_cast<char*>(std::aligned_alloc(direct_align, piece_length)), &std::free);
    if (!buf) {
      std::lock_guard g(error_mutex);
      if (!first_error) first_error = make_error(errc::io_error, "out of memory for the copy's buffer");
      failed = true;
      return;
    }
    for (;;) {
      auto k = next++;
      if (k >= units.size() || failed) return;
      if (auto st = copy_and_hash(units[k], piece_length, buf.get(), done, cancel); !st) {
        std::lock_guard g(error_mutex);
        if (!first_error) first_error = st.err();
        failed = true;
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  // Copying, each thread waits on its own write to the device while the cores hash; reading
  // alone, from the page cache, one thread per core keeps them busy.
  if (threads <= 0) threads = copy ? std::min(16, 4 * usable_cores()) : usable_cores();
  int n = std::max(1, std::min<int>(threads, static_cast<int>(units.size())));
  for (int i = 1; i < n; ++i) pool.emplace_back(work);
  if (progress) {
    // This thread reports progress while the others work, then joins in.
    std::thread reporter([&] {
      while (next.load() < units.size() && !failed) {
        progress(done.load(), total);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    work();
    reporter.join();
  } else {
    work();
  }
  for (auto& t : pool) t.join();
  if (first_error) return *first_error;
  if (cancel && cancel->load()) return make_error(errc::unavailable, "publishing was cancelled");
  // The copy is durable before anyone is told of it. The filesystem is flushed (mostly the small
  // files' write-back, tens of milliseconds) while this thread builds the torrent.
  std::future<status> flushed;
  if (copy) flushed = std::async(std::launch::async, [&root]() -> status {
    fd_guard dir(::open(root->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0 || ::syncfs(dir.get()) != 0)
      return make_error(errc::io_error, "cannot flush " + root->string() + ": " + std::strerror(errno));
    return {};
  });

  std::map<std::string, lt::file_index_t> index_of;
  auto const& cfs = ct.files();
  for (auto i : cfs.file_range())
    if (!cfs.pad_file_at(i)) index_of[cfs.file_path(i)] = i;
  for (auto const& j : jobs) {
    auto it = index_of.find(j.in_torrent.string());
    if (it == index_of.end()) return make_error(errc::io_error, "libtorrent lost " + j.in_torrent.string());
    for (std::size_t p = 0; p < j.pieces.size(); ++p)
      ct.set_hash2(it->second, lt::piece_index_t::diff_type(static_cast<int>(p)), j.pieces[p]);
  }
  auto built = finish_torrent(ct, single_file);
  if (copy)
    if (auto st = flushed.get(); !st) return st.err();
  if (progress) progress(total, total);
  return built;
}

}  // namespace

result<built_torrent> copy_and_make_torrent(std::vector<source_file> const& files, fs::path const& root, std::string const& name,
                                            std::function<void(std::int64_t, std::int64_t)> const& progress,
                                            std::atomic<bool> const* cancel, int threads) {
  return make_from_files(files, &root, name, progress, cancel, threads);
}

result<built_torrent> hash_and_make_torrent(std::vector<source_file> const& files, std::string const& name,
                                            std::function<void(std::int64_t, std::int64_t)> const& progress,
                                            std::atomic<bool> const* cancel, int threads) {
  return make_from_files(files, nullptr, name, progress, cancel, threads);
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
  auto parsed = parse_checked(torrent);
  if (!parsed) return parsed.err();
  auto const& ti = *parsed;
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (auto i : ti->files().file_range())
    if (!ti->files().pad_file_at(i)) out.emplace_back(ti->files().file_path(i), ti->files().file_size(i));
  return out;
}

status verify_files(std::string const& torrent, fs::path const& save_path) {
  auto parsed = parse_checked(torrent);
  if (!parsed) return parsed.err();
  auto const& ti = *parsed;
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
  auto parsed = parse_checked(torrent);
  if (!parsed) return parsed.err();
  auto const& ti = *parsed;
  return detail::check_info(*ti, max_size);
}

result<std::map<std::string, std::string>> piece_hashes(std::string const& torrent) {
  auto parsed = parse_checked(torrent);
  if (!parsed) return parsed.err();
  auto const& ti = *parsed;
  std::map<std::string, std::string> out;
  auto const& files = ti->files();
  if (!ti->v2() || files.num_files() == 0) return make_error(errc::corrupt, "not a v2 torrent");
  for (auto f : files.file_range()) {
    if (files.pad_file_at(f) || files.file_size(f) == 0) continue;
    fs::path path = files.file_path(f);
    if (std::distance(path.begin(), path.end()) < 2) return std::map<std::string, std::string>{};  // single-file
    auto layer = ti->piece_layer(f);
    if (layer.empty()) continue;  // not known: the file is copied
    out[path.lexically_relative(*path.begin()).string()] = std::string(layer.begin(), layer.end());
  }
  return out;
}

result<std::string> torrent_from_resume(std::string const& resume, info_hash2 const& expect) {
  lt::error_code ec;
  auto atp = lt::read_resume_data(lt::span<char const>(resume.data(), static_cast<std::ptrdiff_t>(resume.size())), ec);
  if (ec) return make_error(errc::corrupt, "resume data without the version's metadata");
  return detail::torrent_from_resume(atp, expect);
}

result<std::int64_t> place_unchanged_files(std::string const& old_torrent, fs::path const& old_root,
                                           std::string const& new_torrent, fs::path const& new_root) {
  auto old_ti = parse_checked(old_torrent);
  if (!old_ti) return old_ti.err();
  auto new_ti = parse_checked(new_torrent);
  if (!new_ti) return new_ti.err();
  return detail::place_unchanged(**old_ti, old_root, **new_ti, new_root).bytes;
}

namespace detail {

result<std::string> torrent_from_resume(lt::add_torrent_params const& atp, info_hash2 const& expect) {
  if (!atp.ti || !atp.ti->is_valid()) return make_error(errc::corrupt, "resume data without the version's metadata");
  auto const& ti = *atp.ti;
  if (!ti.info_hashes().has_v2() || v2_of(ti) != expect) return make_error(errc::corrupt, "resume data of another version");
  auto const& files = ti.files();
  int const per_piece = ti.piece_length() / block_size;
  std::vector<lt::sha256_hash> zeros(static_cast<std::size_t>(per_piece));
  lt::sha256_hash const pad_piece = merkle_root(zeros);  // a piece past a file's end (BEP 52)
  lt::entry::dictionary_type layers;
  for (auto f : files.file_range()) {
    if (files.pad_file_at(f) || files.file_size(f) <= ti.piece_length()) continue;  // no layer: the root says it all
    auto const name = files.file_path(f);
    auto missing = [&] { return make_error(errc::corrupt, "resume data lacks the hashes of " + name); };
    if (f >= atp.merkle_trees.end_index()) return missing();
    // libtorrent keeps a file's tree as the nodes whose bit is set in a mask over the whole
    // tree (root first, breadth first), or whole when there is no mask.
    int const blocks = static_cast<int>((files.file_size(f) + block_size - 1) / block_size);
    int const leaves = next_power_of_two(blocks);
    std::size_t const nodes = 2 * static_cast<std::size_t>(leaves) - 1;
    auto const& kept = atp.merkle_trees[f];
    std::vector<lt::sha256_hash> tree(nodes);
    if (f < atp.merkle_tree_mask.end_index() && !atp.merkle_tree_mask[f].empty()) {
      auto const& mask = atp.merkle_tree_mask[f];
      if (mask.size() != nodes) return missing();
      std::size_t k = 0;
      for (std::size_t i = 0; i < nodes; ++i)
        if (mask[i]) {
          if (k == kept.size()) return missing();
          tree[i] = kept[k++];
        }
    } else {
      if (kept.size() != nodes) return missing();
      tree.assign(kept.begin(), kept.end());
    }
    int const pieces = (blocks + per_piece - 1) / per_piece;
    std::size_t const first_piece_node = static_cast<std::size_t>(leaves / per_piece) - 1;
    std::size_t const first_leaf = static_cast<std::size_t>(leaves) - 1;
    std::vector<lt::sha256_hash> layer(static_cast<std::size_t>(next_power_of_two(pieces)), pad_piece);
    for (int p = 0; p < pieces; ++p) {
      auto h = tree[first_piece_node + static_cast<std::size_t>(p)];
      if (h.is_all_zeros()) {  // only the blocks are kept: the piece is their root
        std::vector<lt::sha256_hash> leaf(static_cast<std::size_t>(per_piece));
        for (int i = 0; i < per_piece && p * per_piece + i < blocks; ++i) {
          leaf[static_cast<std::size_t>(i)] = tree[first_leaf + static_cast<std::size_t>(p * per_piece + i)];
          if (leaf[static_cast<std::size_t>(i)].is_all_zeros()) return missing();
        }
        h = merkle_root(std::move(leaf));
      }
      layer[static_cast<std::size_t>(p)] = h;
    }
    auto const root = files.root(f);
    std::string bytes;
    for (int p = 0; p < pieces; ++p) bytes.append(layer[static_cast<std::size_t>(p)].data(), lt::sha256_hash::size());
    if (merkle_root(std::move(layer)) != root) return make_error(errc::corrupt, "the hashes kept for " + name + " do not match its root");
    layers[std::string(root.data(), root.size())] = std::move(bytes);
  }
  return torrent_bytes(ti, std::move(layers));
}

bool small_file_matches(lt::torrent_info const& ti, lt::file_index_t f, std::string_view data) {
  if (!sent_whole(ti, f) || ti.files().file_size(f) != static_cast<std::int64_t>(data.size())) return false;
  int const blocks = static_cast<int>((data.size() + block_size - 1) / block_size);
  std::vector<lt::sha256_hash> leaves(static_cast<std::size_t>(next_power_of_two(blocks)));
  for (int b = 0; b < blocks; ++b) {
    auto const off = static_cast<std::size_t>(b) * block_size;
    leaves[static_cast<std::size_t>(b)] = lt::hasher256(data.data() + off, static_cast<int>(std::min<std::size_t>(block_size, data.size() - off))).final();
  }
  return merkle_root(std::move(leaves)) == ti.files().root(f);
}

bool write_small_file(fs::path const& path, std::string_view data) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return false;
  fd_guard fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (fd.get() < 0) return false;
  if (!pwrite_full(fd.get(), data.data(), data.size(), 0) || fd.close() != 0) {
    fs::remove(path, ec);
    return false;
  }
  return true;
}

result<placed_start> start_from_placed(lt::add_torrent_params const& old, lt::torrent_info const& new_ti, placement const& placed) {
  auto const& nf = new_ti.files();
  // Only files over a piece need a layer from the previous version (a file of one piece is
  // checked by its root alone): a first fetch's small files need no previous version at all.
  std::shared_ptr<lt::torrent_info const> old_full;
  for (auto [file, old_file] : placed.files) {
    if (nf.file_size(file) <= new_ti.piece_length() || old_full) continue;
    if (!old.ti || !old.ti->info_hashes().has_v2()) return make_error(errc::corrupt, "the previous version's resume data lacks its metadata");
    if (old.ti->piece_length() != new_ti.piece_length()) return make_error(errc::invalid_argument, "the versions' piece sizes differ");
    // The previous version's piece layers, rebuilt from its merkle trees and checked against its
    // roots, then parsed (and checked again) by libtorrent.
    auto old_torrent = torrent_from_resume(old, v2_of(*old.ti));
    if (!old_torrent) return old_torrent.err();
    auto parsed = parse_checked(*old_torrent);
    if (!parsed) return parsed.err();
    old_full = std::move(*parsed);
  }
  lt::entry::dictionary_type layers;
  placed_start out;
  out.have.resize(new_ti.num_pieces(), false);
  for (auto [file, old_file] : placed.files) {
    if (nf.file_size(file) > new_ti.piece_length()) {
      auto layer = old_full->piece_layer(old_file);
      if (layer.empty()) return make_error(errc::corrupt, "the previous version holds no piece hashes for " + nf.file_path(file));
      auto const root = nf.root(file);
      layers[std::string(root.data(), root.size())] = std::string(layer.begin(), layer.end());
    }
    auto const first = nf.piece_index_at_file(file);
    for (int p = 0; p < nf.file_num_pieces(file); ++p) out.have.set_bit(first + lt::piece_index_t::diff_type(p));
  }
  auto full = parse_checked(torrent_bytes(new_ti, std::move(layers)));
  if (!full) return full.err();
  if (v2_of(**full) != v2_of(new_ti)) return make_error(errc::corrupt, "the rebuilt torrent is another version");
  out.ti = std::move(*full);
  return out;
}

}  // namespace detail

}  // namespace outlast::net
