// Reading a directory a publisher wants to publish: what is in it, and whether it can be
// published as it is. Blocking file work: run on a worker thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "crypto/result.hpp"
#include "net/torrents.hpp"

namespace outlast::node {

// A file of the site: `relative` is its path inside the site, `source` where to read it (a
// symlink's target inside the site).
using site_file = net::source_file;

// A stat timestamp in nanoseconds, as site_file's stamps hold them.
inline std::int64_t stamp_ns(timespec const& t) { return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec; }

struct site_scan {
  std::vector<site_file> files;
  std::int64_t bytes = 0;
  std::vector<std::string> notes;  // things left out, for the publisher to read
};

// Errors: invalid_argument with the offending path: not a directory, no files, a symlink leading
// outside the directory or to a directory, an unreadable file, a name that is not UTF-8 or has
// control characters, a special file (device, FIFO, socket).
result<site_scan> scan_site_dir(std::filesystem::path const& dir);

// The private copy a version is seeded from, and its torrent, come from
// net::copy_and_make_torrent(scan.files, ...) in one pass.

}  // namespace outlast::node
