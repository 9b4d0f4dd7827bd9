// The gateway: a read-only HTTP server (Boost.Beast) on its own thread that serves every site
// the node holds, each on its own origin (http://<site>.<key>.localhost:PORT/), plus the node's
// dashboard, read-only JSON API and Prometheus metrics on the bare address.
//
// Thread: start/stop/publish from any thread (the node's). The gateway never touches node state:
// the node hands it immutable snapshots (gateway_view) and it serves from the newest one, so a
// version switch is atomic for readers. It accepts GET and HEAD only: no control actions.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crypto/result.hpp"

namespace outlast::net {

struct served_file {
  std::int64_t size = 0;
  std::string etag;  // quoted, from the file's merkle root
  int index = -1;    // the file's number in the torrent
};

// Browse while syncing: which files of a version still downloading libtorrent has verified.
// The node's thread sets the flags as files complete; gateway threads read them (no new view
// needed per file). `want` asks for a file first; it is safe to call from any thread.
struct file_readiness {
  explicit file_readiness(std::size_t files) : ready(files) {}
  std::vector<std::atomic<bool>> ready;
  std::function<void(int file)> want;
  bool is_ready(int file) const {
    return file >= 0 && static_cast<std::size_t>(file) < ready.size() && ready[static_cast<std::size_t>(file)].load(std::memory_order_acquire);
  }
};

// One version of a site as the gateway serves it: complete and verified, or (while the site has
// no complete version yet) the one downloading, of which only verified files are served.
struct served_site {
  std::filesystem::path root;                 // the version's files
  std::int64_t version = 0;
  std::map<std::string, served_file> files;  // relative path -> file; nothing else is served
  std::shared_ptr<file_readiness> syncing;    // set for a version still downloading
};

// Reads the file list of a version from its resume data or .torrent: paths relative to the
// torrent's root folder, with sizes and ETags. Errors: corrupt.
struct file_index {
  std::string root_dir;  // the torrent's folder under the save path; empty for a single-file torrent
  std::map<std::string, served_file> files;
};
result<file_index> index_version(std::string const& resume_or_torrent);

struct gateway_view {
  std::map<std::string, served_site> sites;  // by "<key>/<site>"
  nlohmann::json status;                     // as `outlast status --json`
  nlohmann::json site_list;                  // as `outlast sites --json`
  nlohmann::json notices;                    // as `outlast notices --json`: critical first
};

struct gateway_config {
  std::string listen = "127.0.0.1:8088";
  std::chrono::milliseconds request_timeout{30000};  // a client must send its request within this
  std::size_t max_connections = 512;
  int threads = 1;  // connections are independent, so they spread over threads without locks
  int send_buffer = 0;  // SO_SNDBUF of each connection, bytes; 0 leaves it to the kernel (tests set it)
};

struct gateway_counters {
  std::map<int, std::int64_t> requests_by_status;
  std::int64_t bytes_sent = 0;
};

class gateway {
 public:
  using log_fn = std::function<void(std::string const& level, std::string const& message)>;
  // Binds and starts serving. Errors: invalid_argument (address), io_error (bind failed).
  static result<std::unique_ptr<gateway>> start(gateway_config const& cfg, log_fn log);
  ~gateway();  // stops and joins the thread
  void stop();

  void publish(std::shared_ptr<gateway_view const> view);
  std::string endpoint() const;  // "127.0.0.1:8088" as bound
  gateway_counters counters() const;
  // Requests for the node's own pages (dashboard, API, metrics): someone is watching them.
  std::int64_t node_page_requests() const;

  struct impl;

 private:
  explicit gateway(std::shared_ptr<impl> p);
  std::shared_ptr<impl> m_impl;
};

// Exposed for tests: the one percent-decoding and checking of a request path. Returns the path
// relative to the site root ("" for the root), or an error for anything that could escape it.
result<std::string> clean_request_path(std::string_view target);

// Content type for a file name, from a table of common web types.
std::string_view mime_type(std::string_view path);

}  // namespace outlast::net
