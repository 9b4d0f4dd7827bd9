// Reading a directory a publisher wants to publish: what is in it, and whether it can be
// published as it is. Blocking file work: run on a worker thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "crypto/result.hpp"

namespace outlast::node {

struct site_file {
  std::filesystem::path relative;  // path inside the site
  std::filesystem::path source;    // where to read it (a symlink's target inside the site)
  std::int64_t size = 0;
};

struct site_scan {
  std::vector<site_file> files;
  std::int64_t bytes = 0;
  std::vector<std::string> notes;  // things left out, for the publisher to read
};

// Errors: invalid_argument with the offending path: not a directory, no files, a symlink leading
// outside the directory or to a directory, an unreadable file, a name that is not UTF-8 or has
// control characters, a special file (device, FIFO, socket).
result<site_scan> scan_site_dir(std::filesystem::path const& dir);

// Copies the scanned files under `dest`, calling progress(bytes_done, bytes_total).
// Errors: io_error (disk full, permissions), unavailable (cancelled).
status copy_site(site_scan const& scan, std::filesystem::path const& dest,
                 std::function<void(std::int64_t, std::int64_t)> const& progress, std::atomic<bool> const& cancel);

}  // namespace outlast::node
