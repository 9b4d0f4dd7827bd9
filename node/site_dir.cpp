#include "node/site_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>

#include "crypto/records.hpp"

namespace outlast::node {

namespace fs = std::filesystem;

namespace {

// Version-control folders and Finder litter are never part of a site; publishing .git would
// publish the site's whole history.
bool skipped_name(std::string const& name) {
  static std::set<std::string> const names = {".git", ".hg", ".svn", ".DS_Store"};
  return names.count(name) > 0;
}

std::string shown(fs::path const& p) {
  std::string out;
  for (unsigned char c : p.string()) {
    if (c < 0x20 || c == 0x7f || c >= 0x80) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

error bad(fs::path const& rel, std::string const& why) {
  return make_error(errc::invalid_argument, "cannot publish '" + shown(rel) + "': " + why);
}

bool inside(fs::path const& root, fs::path const& p) {
  auto r = root.lexically_normal().string();
  auto s = p.lexically_normal().string();
  return s.size() > r.size() && s.compare(0, r.size(), r) == 0 && s[r.size()] == '/';
}

}  // namespace

result<site_scan> scan_site_dir(fs::path const& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return make_error(errc::invalid_argument, shown(dir) + " is not a directory");
  auto root = fs::canonical(dir, ec);
  if (ec) return make_error(errc::invalid_argument, "cannot read " + shown(dir) + ": " + ec.message());
  site_scan scan;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec), end;
  if (ec) return make_error(errc::invalid_argument, "cannot read " + shown(dir) + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return make_error(errc::invalid_argument, "cannot read " + shown(dir) + ": " + ec.message());
    auto const& path = it->path();
    auto rel = path.lexically_relative(root);
    auto name = path.filename().string();
    if (skipped_name(name)) {
      scan.notes.push_back("left out " + shown(rel));
      if (it->is_directory(ec) && !it->is_symlink(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!crypto::valid_utf8(name)) return bad(rel, "the name is not valid UTF-8");
    if (std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
      return bad(rel, "the name contains control characters");
    auto st = it->symlink_status(ec);
    fs::path source = path;
    if (fs::is_symlink(st)) {
      auto target = fs::canonical(path, ec);
      if (ec) return bad(rel, "it is a broken symlink");
      if (!inside(root, target)) return bad(rel, "it is a symlink to " + shown(target) + ", outside the directory");
      if (fs::is_directory(target, ec)) return bad(rel, "it is a symlink to a directory; copy the directory instead");
      source = target;
      st = fs::status(target, ec);
    }
    if (fs::is_directory(st)) {
      if (fs::is_empty(path, ec)) scan.notes.push_back("empty directory " + shown(rel) + " is not published");
      continue;
    }
    if (!fs::is_regular_file(st)) return bad(rel, "it is not a regular file (device, FIFO or socket)");
    int fd = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bad(rel, std::string("it cannot be read: ") + std::strerror(errno));
    ::close(fd);
    auto size = static_cast<std::int64_t>(fs::file_size(source, ec));
    if (ec) return bad(rel, "its size cannot be read: " + ec.message());
    scan.files.push_back({rel, source, size});
    scan.bytes += size;
  }
  if (scan.files.empty()) return make_error(errc::invalid_argument, shown(dir) + " has no files to publish");
  std::sort(scan.files.begin(), scan.files.end(), [](auto const& a, auto const& b) { return a.relative < b.relative; });
  return scan;
}

status copy_site(site_scan const& scan, fs::path const& dest, std::function<void(std::int64_t, std::int64_t)> const& progress,
                 std::atomic<bool> const& cancel) {
  std::int64_t done = 0;
  std::array<char, 1 << 16> buf;
  for (auto const& f : scan.files) {
    if (cancel.load()) return make_error(errc::unavailable, "publishing was cancelled");
    auto target = dest / f.relative;
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec) return make_error(errc::io_error, "cannot create " + target.parent_path().string() + ": " + ec.message());
    int in = ::open(f.source.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) return make_error(errc::io_error, "cannot read " + f.source.string() + ": " + std::strerror(errno));
    int out = ::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
      ::close(in);
      return make_error(errc::io_error, "cannot write " + target.string() + ": " + std::strerror(errno));
    }
    std::int64_t copied = 0;
    status st;
    for (;;) {
      ssize_t n = ::read(in, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) { st = make_error(errc::io_error, "cannot read " + f.source.string() + ": " + std::strerror(errno)); break; }
      if (n == 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::write(out, buf.data() + off, static_cast<std::size_t>(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { st = make_error(errc::io_error, "cannot write " + target.string() + ": " + std::strerror(errno)); break; }
        off += w;
      }
      if (!st) break;
      copied += n;
      done += n;
      if (progress) progress(done, scan.bytes);
    }
    if (st && ::fsync(out) != 0) st = make_error(errc::io_error, "cannot flush " + target.string() + ": " + std::strerror(errno));
    ::close(in);
    ::close(out);
    if (!st) return st;
    if (copied != f.size)
      return make_error(errc::io_error, f.relative.string() + " changed while it was being published; try again");
  }
  return {};
}

}  // namespace outlast::node
