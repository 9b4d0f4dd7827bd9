#include "net/gateway.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <libtorrent/hex.hpp>
#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/read_resume_data.hpp>
#include <libtorrent/torrent_info.hpp>
#include <array>
#include <list>
#include <unordered_map>
#include <mutex>
#include <optional>
#include <thread>
#include <pthread.h>

#include "crypto/keys.hpp"
#include "crypto/records.hpp"
#include "net/detail/gateway_pages.hpp"

namespace outlast::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t max_target = 8 * 1024;
constexpr std::size_t max_header = 16 * 1024;
constexpr std::int64_t small_file = 1 << 20;  // read at once; larger files are streamed
constexpr std::size_t chunk = 256 * 1024;

// Every site response carries these: the site stays inside its own origin.
constexpr char const* site_csp =
    "default-src 'self' data: blob:; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'self'";
constexpr char const* node_csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }
beast::string_view bsv(std::string_view s) { return {s.data(), s.size()}; }

// ASCII only (host names and file extensions): no locale, no call per character.
std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace

std::string_view mime_type(std::string_view path) {
  static std::map<std::string, std::string_view, std::less<>> const table = {
      {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"}, {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"}, {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
      {"txt", "text/plain; charset=utf-8"}, {"md", "text/markdown; charset=utf-8"}, {"xml", "application/xml"},
      {"atom", "application/atom+xml"}, {"rss", "application/rss+xml"}, {"csv", "text/csv; charset=utf-8"},
      {"svg", "image/svg+xml"}, {"png", "image/png"}, {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"}, {"gif", "image/gif"},
      {"webp", "image/webp"}, {"avif", "image/avif"}, {"ico", "image/x-icon"}, {"bmp", "image/bmp"},
      {"woff", "font/woff"}, {"woff2", "font/woff2"}, {"ttf", "font/ttf"}, {"otf", "font/otf"},
      {"mp4", "video/mp4"}, {"webm", "video/webm"}, {"ogv", "video/ogg"}, {"mp3", "audio/mpeg"}, {"ogg", "audio/ogg"},
      {"oga", "audio/ogg"}, {"wav", "audio/wav"}, {"flac", "audio/flac"}, {"m4a", "audio/mp4"},
      {"pdf", "application/pdf"}, {"zip", "application/zip"}, {"gz", "application/gzip"}, {"tar", "application/x-tar"},
      {"epub", "application/epub+zip"}, {"wasm", "application/wasm"}, {"webmanifest", "application/manifest+json"},
      {"vtt", "text/vtt; charset=utf-8"}, {"srt", "text/plain; charset=utf-8"},
  };
  auto slash = path.rfind('/');
  auto name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos) return "application/octet-stream";
  auto it = table.find(lower(name.substr(dot + 1)));
  return it == table.end() ? std::string_view("application/octet-stream") : it->second;
}

result<std::string> clean_request_path(std::string_view target) {
  auto bad = [](char const* why) { return make_error(errc::invalid_argument, why); };
  if (target.empty() || target.front() != '/') return bad("the path must start with '/'");
  auto cut = target.find_first_of("?#");
  auto raw = target.substr(0, cut);
  std::string decoded;
  decoded.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '%') {
      if (i + 2 >= raw.size()) return bad("a '%' escape is cut short");
      int hi = hex_value(raw[i + 1]), lo = hex_value(raw[i + 2]);
      if (hi < 0 || lo < 0) return bad("a '%' escape is not two hex digits");
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    decoded.push_back(c);
  }
  // Decoded once: a "%2e%2e" is "..", and a "%252e" stays "%2e" (a literal name, not decoded again).
  if (!crypto::valid_utf8(decoded)) return bad("the path is not UTF-8");
  std::string out;
  std::size_t pos = 1;
  while (pos <= decoded.size()) {
    auto next = decoded.find('/', pos);
    auto seg = std::string_view(decoded).substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    for (unsigned char ch : seg)
      if (ch < 0x20 || ch == 0x7f || ch == '\\') return bad("the path holds a control character or a backslash");
    if (seg == "." || seg == "..") return bad("the path holds '.' or '..'");
    if (!seg.empty()) {
      if (!out.empty()) out += '/';
      out += seg;
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  if (!decoded.empty() && decoded.back() == '/' && !out.empty()) out += '/';  // keep "dir/" for index.html
  return out;
}

result<file_index> index_version(std::string const& data) {
  std::shared_ptr<lt::torrent_info const> ti;
  lt::error_code ec;
  auto atp = lt::read_resume_data({data.data(), static_cast<std::ptrdiff_t>(data.size())}, ec);
  if (!ec && atp.ti) {
    ti = atp.ti;
  } else {
    try {
      ti = std::make_shared<lt::torrent_info>(lt::span<char const>(data.data(), static_cast<std::ptrdiff_t>(data.size())), lt::from_span);
    } catch (std::exception const& e) {
      return make_error(errc::corrupt, std::string("cannot read the version's file list: ") + e.what());
    }
  }
  file_index out;
  auto const& fs = ti->files();
  // A multi-file torrent keeps its files under `name/`; a single-file one (pad files aside) has
  // its file directly in the save path.
  auto prefix = ti->name() + "/";
  bool multi = false;
  for (auto i : fs.file_range())
    if (!fs.pad_file_at(i) && fs.file_path(i).rfind(prefix, 0) == 0) multi = true;
  if (multi) out.root_dir = ti->name();
  for (auto i : fs.file_range()) {
    if (fs.pad_file_at(i)) continue;
    auto path = fs.file_path(i);
    auto rel = multi ? path.substr(prefix.size()) : path;
    served_file f;
    f.size = fs.file_size(i);
    auto root = fs.root(i);
    f.etag = "\"" + lt::aux::to_hex({root.data(), 20}) + "\"";
    f.index = static_cast<int>(i);
    out.files.emplace(std::move(rel), std::move(f));
  }
  return out;
}

struct gateway::impl : std::enable_shared_from_this<impl> {
  // One io_context per thread, each run by that thread alone: connections are spread over them
  // round-robin and never share a scheduler lock. The acceptor lives on the first.
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::size_t next_context = 0;
  gateway_config cfg;
  log_fn log;
  std::vector<std::thread> threads;
  std::string bound;
  std::string port;
  std::atomic<std::shared_ptr<gateway_view const>> view{std::make_shared<gateway_view>()};
  // Bumped on every publish, so connections reload the view only when it changed (the atomic
  // shared_ptr load takes a lock).
  std::atomic<std::uint64_t> view_generation{1};
  std::atomic<std::size_t> connections{0};
  // Lock-free counters: every request touches them, from every thread.
  std::array<std::atomic<std::int64_t>, 600> by_status{};
  std::atomic<std::int64_t> bytes_sent{0};
  std::atomic<std::int64_t> node_pages{0};

  void count(int status, std::int64_t bytes) {
    if (status >= 0 && status < static_cast<int>(by_status.size())) by_status[static_cast<std::size_t>(status)].fetch_add(1, std::memory_order_relaxed);
    bytes_sent.fetch_add(bytes, std::memory_order_relaxed);
  }

  void accept();
  gateway_counters counters_snapshot() const;
};

namespace {

using string_response = http::response<http::string_body>;
// Sockets bound to their thread's io_context by type: no type-erased executor is copied on every
// operation (with beast::tcp_stream's any_io_executor that was ~6% of a small file's request).
using socket_type = tcp::socket::rebind_executor<asio::io_context::executor_type>::other;

// Small files are kept in memory, and open: most requests of a site are for small files, and
// serving them then costs no open/read/close (the body goes by sendfile from the open file, or
// from the bytes). One cache per gateway thread (thread_local), so no locks. Keys are full paths
// inside a version directory, which never change content once complete.
struct cached_file {
  std::string data;
  std::string ok_header;  // the whole "200 OK" keep-alive response header, built once
  int fd = -1;            // the file, open: a whole-file answer goes out with sendfile(2)
  cached_file() = default;
  cached_file(cached_file const&) = delete;
  cached_file& operator=(cached_file const&) = delete;
  ~cached_file() {
    if (fd >= 0) ::close(fd);
  }
};

class small_file_cache {
 public:
  static constexpr std::size_t max_bytes = 16 << 20;
  static constexpr std::int64_t max_file = 64 * 1024;
  static constexpr std::size_t max_entries = 256;  // each holds a file descriptor

  std::shared_ptr<cached_file const> get(std::string const& path) {
    auto it = m_map.find(path);
    if (it == m_map.end()) return nullptr;
    m_lru.splice(m_lru.begin(), m_lru, it->second.second);
    return it->second.first;
  }
  void put(std::string const& path, std::shared_ptr<cached_file const> data) {
    if (m_map.count(path)) return;
    m_lru.push_front(path);
    m_bytes += data->data.size() + data->ok_header.size();
    m_map.emplace(path, std::make_pair(std::move(data), m_lru.begin()));
    while ((m_bytes > max_bytes || m_map.size() > max_entries) && !m_lru.empty()) {
      auto victim = m_map.find(m_lru.back());
      m_bytes -= victim->second.first->data.size() + victim->second.first->ok_header.size();
      m_map.erase(victim);
      m_lru.pop_back();
    }
  }

 private:
  std::unordered_map<std::string, std::pair<std::shared_ptr<cached_file const>, std::list<std::string>::iterator>> m_map;
  std::list<std::string> m_lru;
  std::size_t m_bytes = 0;
};

thread_local small_file_cache file_cache;

struct range {
  std::int64_t first = 0, last = 0;  // inclusive
};

// Parses a single "bytes=" range. nullopt: no usable Range (serve the whole file); a range with
// first > last: unsatisfiable.
std::optional<range> parse_range(std::string_view h, std::int64_t size) {
  if (h.substr(0, 6) != "bytes=" || h.find(',') != std::string_view::npos) return std::nullopt;
  auto spec = h.substr(6);
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto num = [](std::string_view s) -> std::optional<std::int64_t> {
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
    return std::stoll(std::string(s));
  };
  auto a = spec.substr(0, dash), b = spec.substr(dash + 1);
  if (a.empty()) {  // suffix: the last N bytes
    auto n = num(b);
    if (!n || *n == 0) return range{1, 0};
    return range{std::max<std::int64_t>(0, size - *n), size - 1};
  }
  auto first = num(a);
  if (!first) return std::nullopt;
  if (*first >= size) return range{1, 0};
  std::int64_t last = size - 1;
  if (!b.empty()) {
    auto l = num(b);
    if (!l || *l < *first) return std::nullopt;
    last = std::min(*l, size - 1);
  }
  return range{*first, last};
}

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(socket_type s, std::shared_ptr<gateway::impl> gw) : m_stream(std::move(s)), m_gw(std::move(gw)) { ++m_gw->connections; }
  ~connection() {
    if (m_fd >= 0) ::close(m_fd);
    --m_gw->connections;
  }

  void start() {
    beast::error_code ec;
    m_stream.socket().native_non_blocking(true, ec);  // sendfile must not block the thread
    read();
  }

 private:
  void read() {
    m_parser.emplace();
    m_parser->header_limit(max_header);
    m_parser->body_limit(0);
    m_stream.expires_after(m_gw->cfg.request_timeout);
    http::async_read(m_stream, m_buffer, *m_parser, [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset) {
      close();
      return;
    }
    if (ec) {
      m_keep_alive = false;
      int status = ec == http::error::header_limit ? 431 : ec == http::error::body_limit ? 413 : 400;
      return send_text(status, ec == http::error::header_limit ? "request headers too large\n" : "bad request\n", false);
    }
    auto const& req = m_parser->get();
    m_keep_alive = req.keep_alive();
    m_head = req.method() == http::verb::head;
    if (auto gen = m_gw->view_generation.load(std::memory_order_acquire); gen != m_view_generation) {
      m_view = m_gw->view.load();
      m_view_generation = gen;
    }
    handle(req);
  }

  void handle(http::request<http::empty_body> const& req) {
    if (req.target().size() > max_target) {
      m_keep_alive = false;
      return send_text(414, "URL too long\n", false);
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head)
      return send_text(405, "the gateway is read-only: GET and HEAD only\n", false);
    auto host = lower(sv(req[http::field::host]));
    auto colon = host.rfind(':');
    if (colon != std::string::npos && host.find(']') == std::string::npos) host.resize(colon);
    else if (colon != std::string::npos && host.back() != ']') host.resize(colon);
    constexpr std::string_view suffix = ".localhost";
    if (host.size() > suffix.size() && host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0) {
      auto labels = host.substr(0, host.size() - suffix.size());
      auto dot = labels.find('.');
      if (dot == std::string::npos) return send_text(404, "no such site: use http://SITE.KEY.localhost:PORT/\n", false);
      auto site_label = labels.substr(0, dot), key_label = labels.substr(dot + 1);
      return serve_site(req, key_label + "/" + site_label);
    }
    if (host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host == m_gw->bound.substr(0, m_gw->bound.rfind(':')))
      return serve_node(req);
    // Anything else is a name that points here without being ours: refuse (DNS rebinding).
    send_text(421, "unknown host\n", false);
  }

  void serve_node(http::request<http::empty_body> const& req) {
    std::string target(req.target());
    auto path = target.substr(0, target.find('?'));
    if (path.rfind("/s/", 0) == 0) return redirect_to_origin(path.substr(3) + (target.size() > path.size() ? target.substr(path.size()) : ""));
    m_gw->node_pages.fetch_add(1, std::memory_order_relaxed);
    auto page = detail::render_node_page(path, *m_view, m_gw->counters_snapshot());
    if (!page) return send_text(404, "not found\n", true);
    string_response res{http::status::ok, 11};
    res.set(http::field::content_type, page->content_type);
    res.set(http::field::cache_control, "no-store");
    res.set("Content-Security-Policy", node_csp);
    res.set("X-Frame-Options", "DENY");
    common_headers(res);
    res.body() = std::move(page->body);
    send(std::move(res));
  }

  // /s/<key>/<site>/<path> -> http://<site>.<key>.localhost:<port>/<path>
  void redirect_to_origin(std::string rest) {
    auto slash = rest.find('/');
    auto key_text = rest.substr(0, slash);
    std::string after = slash == std::string::npos ? "" : rest.substr(slash + 1);
    auto slash2 = after.find('/');
    auto site = after.substr(0, slash2);
    auto path = slash2 == std::string::npos ? std::string("/") : after.substr(slash2);
    auto key = crypto::parse_public_key(key_text);
    if (!key || !crypto::valid_site_name(site)) return send_text(404, "not a site address: use /s/KEY/SITE/\n", true);
    string_response res{http::status::moved_permanently, 11};
    res.set(http::field::location, "http://" + site + "." + key->to_text() + ".localhost:" + m_gw->port + path);
    common_headers(res);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "moved to the site's own origin\n";
    send(std::move(res));
  }

  void serve_site(http::request<http::empty_body> const& req, std::string const& address) {
    auto it = m_view->sites.find(address);
    if (it == m_view->sites.end())
      return send_text(404, "this node holds no complete version of " + address + "\n", true);
    auto const& site = it->second;
    auto clean = clean_request_path(sv(req.target()));
    if (!clean) return send_text(400, clean.err().message + "\n", true);
    std::string path = *clean;
    if (path.empty() || path.back() == '/') path += "index.html";
    auto f = site.files.find(path);
    if (f == site.files.end()) {
      if (site.files.count(path + "/index.html")) {  // a directory: relative links need the slash
        string_response res{http::status::moved_permanently, 11};
        std::string target(req.target());
        auto q = target.find('?');
        res.set(http::field::location, target.substr(0, q) + "/" + (q == std::string::npos ? "" : target.substr(q)));
        common_headers(res);
        return send(std::move(res));
      }
      auto custom = site.files.find("404.html");
      if (custom != site.files.end() && (!site.syncing || site.syncing->is_ready(custom->second.index)))
        return serve_file(req, site, custom->first, custom->second, http::status::not_found);
      return send_text(404, "not found\n", true);
    }
    if (site.syncing && !site.syncing->is_ready(f->second.index)) return serve_pending(*site.syncing, f->second, path);
    serve_file(req, site, f->first, f->second, http::status::ok);
  }

  // A file of a version still downloading that has not arrived yet: it is asked for first, and
  // the reader is told to come back (a page reloads itself).
  void serve_pending(file_readiness const& syncing, served_file const& file, std::string const& path) {
    if (syncing.want) syncing.want(file.index);
    string_response res{http::status::service_unavailable, 11};
    res.set(http::field::retry_after, "2");
    res.set(http::field::cache_control, "no-store");
    res.set("Content-Security-Policy", site_csp);
    res.set("Cross-Origin-Resource-Policy", "same-origin");
    common_headers(res);
    if (mime_type(path).rfind("text/html", 0) == 0) {
      res.set(http::field::content_type, "text/html; charset=utf-8");
      res.body() = "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=2><meta name=viewport content=\"width=device-width\">"
                   "<title>Arriving...</title><p>This page is still arriving from the swarm. It is being fetched first; this page "
                   "reloads by itself.</p>\n";
    } else {
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "this file is still arriving from the swarm; it is being fetched first: try again shortly\n";
    }
    send(std::move(res));
  }

  void serve_file(http::request<http::empty_body> const& req, served_site const& site, std::string const& rel,
                  served_file const& file, http::status status) {
    // rel comes from the verified torrent's file list: relative, never empty, no "..".
    std::string full = site.root.native();
    full += '/';
    full += rel;
    std::shared_ptr<cached_file const> cached;
    if (file.size <= small_file_cache::max_file) cached = file_cache.get(full);
    if (!cached) {
      // Defence in depth: only files listed in the verified torrent are served, and never
      // through a symlink.
      int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) return send_text(404, "not found\n", true);
      if (m_fd >= 0) ::close(m_fd);
      m_fd = fd;
      if (file.size <= small_file_cache::max_file) {
        auto entry = std::make_shared<cached_file>();
        entry->data.resize(static_cast<std::size_t>(file.size));
        std::int64_t got = 0;
        while (got < file.size) {
          auto n = ::pread(m_fd, entry->data.data() + got, static_cast<std::size_t>(file.size - got), got);
          if (n <= 0) return send_text(500, "cannot read the file\n", false);
          got += n;
        }
        entry->ok_header = std::string("HTTP/1.1 200 OK\r\nContent-Type: ") + std::string(mime_type(rel)) + "\r\nETag: " + file.etag +
                           "\r\nCache-Control: no-cache\r\nAccept-Ranges: bytes\r\nContent-Security-Policy: " + site_csp +
                           "\r\nCross-Origin-Resource-Policy: same-origin\r\nServer: outlast\r\nX-Content-Type-Options: nosniff"
                           "\r\nReferrer-Policy: no-referrer\r\nContent-Length: " + std::to_string(file.size) + "\r\n\r\n";
        entry->fd = m_fd;  // the entry owns it now
        m_fd = -1;
        file_cache.put(full, entry);
        cached = std::move(entry);
      }
    }

    auto set_site_headers = [&](auto& res) {
      res.set(http::field::content_type, bsv(mime_type(rel)));
      res.set(http::field::etag, file.etag);
      res.set(http::field::cache_control, "no-cache");
      res.set(http::field::accept_ranges, "bytes");
      res.set("Content-Security-Policy", site_csp);
      res.set("Cross-Origin-Resource-Policy", "same-origin");
      common_headers(res);
    };
    if (status == http::status::ok) {
      auto inm = sv(req[http::field::if_none_match]);
      if (!inm.empty() && (inm == "*" || inm.find(file.etag) != std::string_view::npos)) {
        string_response res{http::status::not_modified, 11};
        set_site_headers(res);
        return send(std::move(res));
      }
    }
    std::int64_t first = 0, length = file.size;
    auto range_header = sv(req[http::field::range]);
    // The common case, a small file asked whole on a kept-alive connection, goes out as a header
    // built once plus the cached bytes: no field map, no serializer, no copy.
    if (cached && status == http::status::ok && range_header.empty() && !m_head && m_keep_alive && req.version() == 11)
      return send_raw(std::move(cached));
    if (status == http::status::ok && !range_header.empty()) {
      auto r = parse_range(range_header, file.size);
      if (r && r->first > r->last) {
        string_response res{http::status::range_not_satisfiable, 11};
        res.set(http::field::content_range, "bytes */" + std::to_string(file.size));
        common_headers(res);
        return send(std::move(res));
      }
      if (r) {
        status = http::status::partial_content;
        first = r->first;
        length = r->last - r->first + 1;
      }
    }
    if (m_head || length <= small_file) {
      string_response res{status, 11};
      set_site_headers(res);
      if (status == http::status::partial_content)
        res.set(http::field::content_range, "bytes " + std::to_string(first) + "-" + std::to_string(first + length - 1) + "/" +
                                                std::to_string(file.size));
      if (!m_head && cached) return send_cached(std::move(res), std::move(cached), first, length);
      if (!m_head) {
        res.body().resize(static_cast<std::size_t>(length));
        std::int64_t got = 0;
        while (got < length) {
          auto n = ::pread(m_fd, res.body().data() + got, static_cast<std::size_t>(length - got), first + got);
          if (n <= 0) return send_text(500, "cannot read the file\n", false);
          got += n;
        }
        return send(std::move(res));
      }
      res.content_length(length);
      return send(std::move(res), /*head=*/true);
    }
    stream_file(status, first, length, set_site_headers, file.size);
  }

  template <class SetHeaders>
  void stream_file(http::status status, std::int64_t first, std::int64_t length, SetHeaders const& set_headers, std::int64_t size) {
    m_stream_res.emplace(status, 11);
    set_headers(*m_stream_res);
    if (status == http::status::partial_content)
      m_stream_res->set(http::field::content_range,
                        "bytes " + std::to_string(first) + "-" + std::to_string(first + length - 1) + "/" + std::to_string(size));
    m_stream_res->keep_alive(m_keep_alive);
    m_stream_res->content_length(length);
    m_stream_res->body().data = nullptr;
    m_stream_res->body().more = true;
    m_serializer.emplace(*m_stream_res);
    m_offset = first;
    m_remaining = length;
    m_status = static_cast<int>(status);
    m_sent = 0;
    m_chunk.resize(chunk);
    m_stream.expires_never();
    http::async_write_header(m_stream, *m_serializer, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->close();
      self->write_chunk();
    });
  }

  void write_chunk() {
    auto n = ::pread(m_fd, m_chunk.data(), static_cast<std::size_t>(std::min<std::int64_t>(m_remaining, chunk)), m_offset);
    if (n <= 0) return close();  // the headers promised more; nothing sensible to add
    m_offset += n;
    m_remaining -= n;
    m_sent += n;
    m_stream_res->body().data = m_chunk.data();
    m_stream_res->body().size = static_cast<std::size_t>(n);
    m_stream_res->body().more = m_remaining > 0;
    http::async_write(m_stream, *m_serializer, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return self->close();
      if (self->m_remaining > 0) return self->write_chunk();
      self->m_gw->count(self->m_status, self->m_sent);
      self->m_serializer.reset();
      self->m_stream_res.reset();
      if (!self->m_keep_alive) return self->close();
      self->read();
    });
  }

  // Sends a cached file without copying it: the body points into the cache entry, which this
  // connection holds until the write completes.
  void send_raw(std::shared_ptr<cached_file const> entry) {
    m_entry = std::move(entry);
    if (m_entry->fd >= 0) {
      // The header with MSG_MORE, then the file from the page cache with sendfile: the kernel
      // does not copy the body into the socket (that copy was the largest single cost of a
      // small file's request).
      auto const& h = m_entry->ok_header;
      auto n = ::send(m_stream.socket().native_handle(), h.data(), h.size(), MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n == static_cast<ssize_t>(h.size())) {
        m_offset = 0;
        return send_file_body();
      }
      if (n > 0) return close();  // a header cut short: nothing sensible follows
    }
    write_cached(std::array<asio::const_buffer, 2>{asio::buffer(m_entry->ok_header), asio::buffer(m_entry->data)});
  }

  // Writes (the rest of) a cached 200 answer through Beast, under the request timeout; the
  // buffers point into m_entry, held until the write completes.
  template <class Buffers>
  void write_cached(Buffers const& buffers) {
    auto size = static_cast<std::int64_t>(m_entry->data.size());
    m_stream.expires_after(m_gw->cfg.request_timeout);
    asio::async_write(m_stream, buffers, [self = shared_from_this(), size](beast::error_code ec, std::size_t) {
      self->m_gw->count(200, size);
      self->m_entry.reset();
      if (ec) return self->close();
      self->read();
    });
  }

  void send_file_body() {
    auto size = static_cast<std::int64_t>(m_entry->data.size());
    int sock = m_stream.socket().native_handle();
    while (m_offset < size) {
      off_t off = m_offset;
      auto n = ::sendfile(sock, m_entry->fd, &off, static_cast<std::size_t>(size - m_offset));
      if (n > 0) {
        m_offset += n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        // The client is not reading as fast: the rest goes from the cached bytes.
        return write_cached(asio::buffer(m_entry->data.data() + m_offset, static_cast<std::size_t>(size - m_offset)));
      }
      return close();
    }
    m_gw->count(200, size);
    m_entry.reset();
    read();
  }

  void send_cached(string_response const& head, std::shared_ptr<cached_file const> data, std::int64_t first, std::int64_t length) {
    m_stream_res.emplace(head.result(), 11);
    for (auto const& f : head) m_stream_res->set(f.name_string(), f.value());
    m_stream_res->keep_alive(m_keep_alive);
    m_stream_res->content_length(length);
    m_entry = std::move(data);
    m_stream_res->body().data = const_cast<char*>(m_entry->data.data() + first);
    m_stream_res->body().size = static_cast<std::size_t>(length);
    m_stream_res->body().more = false;
    int status = head.result_int();
    m_stream.expires_after(m_gw->cfg.request_timeout);
    http::async_write(m_stream, *m_stream_res, [self = shared_from_this(), status, length](beast::error_code ec, std::size_t) {
      self->m_gw->count(status, length);
      self->m_stream_res.reset();
      self->m_entry.reset();
      if (ec || !self->m_keep_alive) return self->close();
      self->read();
    });
  }

  template <class Res>
  void common_headers(Res& res) {
    res.set(http::field::server, "outlast");
    res.set("X-Content-Type-Options", "nosniff");
    res.set("Referrer-Policy", "no-referrer");
  }

  void send_text(int status, std::string body, bool keep) {
    string_response res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    common_headers(res);
    res.body() = std::move(body);
    if (!keep) m_keep_alive = false;
    send(std::move(res));
  }

  void send(string_response res, bool head = false) {
    res.keep_alive(m_keep_alive);
    if (!head) res.prepare_payload();
    int status = res.result_int();
    auto bytes = static_cast<std::int64_t>(res.body().size());
    if (head) res.body().clear();
    m_res = std::make_shared<string_response>(std::move(res));
    m_stream.expires_after(m_gw->cfg.request_timeout);
    auto write = [self = shared_from_this(), status, bytes](beast::error_code ec, std::size_t) {
      self->m_gw->count(status, bytes);
      self->m_res.reset();
      if (ec || !self->m_keep_alive) return self->close();
      self->read();
    };
    if (head) {
      m_head_serializer.emplace(*m_res);
      http::async_write_header(m_stream, *m_head_serializer, write);
    } else {
      http::async_write(m_stream, *m_res, write);
    }
  }

  void close() {
    beast::error_code ignored;
    m_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    m_stream.close();
  }

  beast::basic_stream<tcp, asio::io_context::executor_type> m_stream;
  beast::flat_buffer m_buffer;  // bounded by the parser's header limit
  std::shared_ptr<gateway::impl> m_gw;
  std::shared_ptr<gateway_view const> m_view;
  std::optional<http::request_parser<http::empty_body>> m_parser;
  std::shared_ptr<string_response> m_res;
  std::optional<http::response_serializer<http::string_body>> m_head_serializer;
  std::optional<http::response<http::buffer_body>> m_stream_res;
  std::optional<http::response_serializer<http::buffer_body>> m_serializer;
  std::shared_ptr<cached_file const> m_entry;
  std::uint64_t m_view_generation = 0;
  std::vector<char> m_chunk;
  int m_fd = -1;
  std::int64_t m_offset = 0, m_remaining = 0, m_sent = 0;
  int m_status = 200;
  bool m_keep_alive = true;
  bool m_head = false;
};

}  // namespace

void gateway::impl::accept() {
  auto& target = *contexts[next_context++ % contexts.size()];
  acceptor->async_accept(target, [self = shared_from_this()](beast::error_code ec, socket_type s) {
    if (!self->acceptor->is_open()) return;
    if (!ec) {
      if (self->connections.load() >= self->cfg.max_connections) {
        beast::error_code ignored;
        s.close(ignored);  // over the limit: drop rather than queue without bound
      } else {
        s.set_option(tcp::no_delay(true), ec);
        if (self->cfg.send_buffer > 0) s.set_option(asio::socket_base::send_buffer_size(self->cfg.send_buffer), ec);
        std::make_shared<connection>(std::move(s), self)->start();
      }
    }
    self->accept();
  });
}

gateway_counters gateway::impl::counters_snapshot() const {
  gateway_counters out;
  for (std::size_t i = 0; i < by_status.size(); ++i)
    if (auto n = by_status[i].load(std::memory_order_relaxed)) out.requests_by_status[static_cast<int>(i)] = n;
  out.bytes_sent = bytes_sent.load(std::memory_order_relaxed);
  return out;
}

result<std::unique_ptr<gateway>> gateway::start(gateway_config const& cfg, log_fn log) {
  auto colon = cfg.listen.rfind(':');
  if (colon == std::string::npos) return make_error(errc::invalid_argument, "gateway: '" + cfg.listen + "' is not IP:PORT");
  auto host = cfg.listen.substr(0, colon);
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return make_error(errc::invalid_argument, "gateway: '" + cfg.listen + "' needs an IP address");
  int port = 0;
  try {
    port = std::stoi(cfg.listen.substr(colon + 1));
  } catch (std::exception const&) {
    return make_error(errc::invalid_argument, "gateway: bad port in '" + cfg.listen + "'");
  }
  // sendfile(2) has no MSG_NOSIGNAL: a reader that hangs up while its answer goes out would
  // otherwise kill the whole process with SIGPIPE. Asio and libtorrent pass MSG_NOSIGNAL on
  // their own writes, so nothing in the node relies on the signal.
  ::signal(SIGPIPE, SIG_IGN);
  auto p = std::make_shared<impl>();
  p->cfg = cfg;
  p->log = std::move(log);
  for (int i = 0; i < std::max(1, cfg.threads); ++i) p->contexts.push_back(std::make_unique<asio::io_context>(1));
  p->acceptor = std::make_unique<tcp::acceptor>(*p->contexts.front());
  tcp::endpoint ep(addr, static_cast<std::uint16_t>(port));
  p->acceptor->open(ep.protocol(), ec);
  if (!ec) p->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) p->acceptor->bind(ep, ec);
  if (!ec) p->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(errc::io_error, "gateway: cannot listen on " + cfg.listen + ": " + ec.message());
  auto local = p->acceptor->local_endpoint();
  p->port = std::to_string(local.port());
  p->bound = (local.address().is_v6() ? "[" + local.address().to_string() + "]" : local.address().to_string()) + ":" + p->port;
  p->accept();
  // Work guards keep the other contexts running while they have no connection yet.
  for (auto& c : p->contexts)
    p->threads.emplace_back([p, ctx = c.get(), n = p->threads.size()] {
      ::pthread_setname_np(::pthread_self(), ("gateway-" + std::to_string(n)).c_str());  // for top -H, perf
      auto guard = asio::make_work_guard(*ctx);
      ctx->run();
    });
  return std::unique_ptr<gateway>(new gateway(std::move(p)));
}

gateway::gateway(std::shared_ptr<impl> p) : m_impl(std::move(p)) {}
gateway::~gateway() { stop(); }

void gateway::stop() {
  if (m_impl->threads.empty()) return;
  asio::post(*m_impl->contexts.front(), [p = m_impl] {
    beast::error_code ec;
    p->acceptor->close(ec);
    for (auto& c : p->contexts) c->stop();
  });
  for (auto& t : m_impl->threads) t.join();
  m_impl->threads.clear();
  // Handlers still queued (the pending accept, idle connections) hold the impl: destroying the
  // contexts releases them, the acceptor first since it lives on one of them.
  m_impl->acceptor.reset();
  m_impl->contexts.clear();
}

void gateway::publish(std::shared_ptr<gateway_view const> view) {
  m_impl->view.store(std::move(view));
  m_impl->view_generation.fetch_add(1, std::memory_order_release);
}
std::string gateway::endpoint() const { return m_impl->bound; }
gateway_counters gateway::counters() const { return m_impl->counters_snapshot(); }
std::int64_t gateway::node_page_requests() const { return m_impl->node_pages.load(std::memory_order_relaxed); }

}  // namespace outlast::net
