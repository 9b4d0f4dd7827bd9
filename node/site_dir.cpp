#include "node/site_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
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
    // The entry's type comes from the directory listing; only a symlink costs a lookup.
    fs::path source = path;
    fs::file_status st;
    if (it->is_symlink(ec)) {
      auto target = fs::canonical(path, ec);
      if (ec) return bad(rel, "it is a broken symlink");
      if (!inside(root, target)) return bad(rel, "it is a symlink to " + shown(target) + ", outside the directory");
      if (fs::is_directory(target, ec)) return bad(rel, "it is a symlink to a directory; copy the directory instead");
      source = target;
      st = fs::status(target, ec);
    } else {
      st = fs::file_status(it->is_directory(ec) ? fs::file_type::directory
                           : it->is_regular_file(ec) ? fs::file_type::regular
                                                     : fs::file_type::unknown);
    }
    if (fs::is_directory(st)) {
      if (fs::is_empty(path, ec)) scan.notes.push_back("empty directory " + shown(rel) + " is not published");
      continue;
    }
    if (!fs::is_regular_file(st)) return bad(rel, "it is not a regular file (device, FIFO or socket)");
    // One open and one fstat: the file can be read, and its size and the stamp a later publish
    // compares (publish_reuse). O_NONBLOCK: a FIFO put in the file's place since the listing must
    // not hang the scan (the fstat below refuses it).
    int fd = ::open(source.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return bad(rel, std::string("it cannot be read: ") + std::strerror(errno));
    struct stat sb {};
    int stat_rc = ::fstat(fd, &sb);
    int stat_errno = errno;
    ::close(fd);
    if (stat_rc != 0) return bad(rel, std::string("its size cannot be read: ") + std::strerror(stat_errno));
    if (!S_ISREG(sb.st_mode)) return bad(rel, "it is not a regular file (device, FIFO or socket)");
    auto size = static_cast<std::int64_t>(sb.st_size);
    site_file f{source, rel, size};
    f.mtime_ns = stamp_ns(sb.st_mtim);
    f.ctime_ns = stamp_ns(sb.st_ctim);
    f.inode = static_cast<std::int64_t>(sb.st_ino);
    f.device = static_cast<std::int64_t>(sb.st_dev);
    scan.files.push_back(std::move(f));
    scan.bytes += size;
  }
  if (scan.files.empty()) return make_error(errc::invalid_argument, shown(dir) + " has no files to publish");
  std::sort(scan.files.begin(), scan.files.end(), [](auto const& a, auto const& b) { return a.relative < b.relative; });
  return scan;
}

}  // namespace outlast::node
