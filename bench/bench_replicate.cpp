// bench_replicate: publish a site and replicate it to one follower on loopback, with the real
// `outlast` binary, beside stock references on the same files in the same run: a stock
// libtorrent pair (default settings, this process) on a v2 and on a v1 torrent, aria2c fetching
// the v1 torrent from a stock seeder, and the same from 3 seeders at once (Outlast: a publisher
// and two mirrors; stock: three seeding sessions). Prints publish time, replication MB/s, the
// references' MB/s, and the bytes an update of one file moves.
//
//   bench_replicate OUTLAST_BINARY [--small] [--runs N]
//
// The standard site: 1 x 600 MB, 200 x 1 MB, 5,000 x 20 KB (941 MB); --small: 1 x 60 MB,
// 20 x 1 MB, 500 x 20 KB (91 MB).
#include <fcntl.h>
#include <unistd.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/torrent_info.hpp>
#include <libtorrent/torrent_status.hpp>
#include <libtorrent/version.hpp>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "bench/stock.hpp"
#include "bench/summary.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

std::string binary;

// Every run's directories stay until the bench ends (its work directory goes then). Deleting
// thousands of files just before the next run creates as many would time the filesystem's inode
// allocator instead of what is measured: ext4 without a journal (as on the development VM)
// passes over inodes freed in the last minute or more, reading each one's table block, and 5,000
// files then take 1 s to create instead of 0.04 s. With too little free space for that
// (`keep_all` false), each directory goes as soon as its run ends.
bool keep_all = true;
int dirs_made = 0;

fs::path fresh_path(fs::path const& work, std::string const& what) { return work / (what + "-" + std::to_string(++dirs_made)); }

fs::path fresh_dir(fs::path const& work, std::string const& what) {
  auto p = fresh_path(work, what);
  fs::create_directories(p);
  return p;
}

void done_with(fs::path const& p) {
  if (!keep_all) fs::remove_all(p);
}

// Microseconds to create one empty file, over 500 in a directory of their own (kept: deleting
// them would feed the effect it looks for).
double create_cost_us(fs::path const& dir) {
  fs::create_directories(dir);
  auto t0 = clk::now();
  for (int i = 0; i < 500; ++i) std::ofstream(dir / std::to_string(i));
  return std::chrono::duration<double, std::micro>(clk::now() - t0).count() / 500;
}

// Waits (6 minutes at most) while creating files is far slower than usual: on ext4 without a
// journal that is the few minutes after a large delete (another bench's, a build's), and the
// first run would time the filesystem's inode allocator instead of what it measures.
void wait_for_quiet_filesystem(fs::path const& work) {
  constexpr double usual_us = 50;  // ~8 us a file here when quiet, ~200 us right after a large delete
  auto deadline = clk::now() + 6min;
  for (int probe = 0;; ++probe) {
    double us = create_cost_us(work / "probes" / std::to_string(probe));
    if (us < usual_us) return;
    if (clk::now() > deadline) {
      std::printf("bench_replicate: creating a file still takes %.0f us; measuring anyway\n", us);
      return;
    }
    std::printf("bench_replicate: creating a file takes %.0f us right now (over %.0f: a recent large delete on a journal-less ext4?);\n"
                "  waiting for it to settle...\n", us, usual_us);
    std::this_thread::sleep_for(15s);
  }
}

// Writes back every dirty page of the filesystem (not timed), before each timed step: otherwise
// a step inherits the write-back of the one before (a follower's 941 MB download, the site just
// generated) and, when it ends with syncfs as publish does, pays for it.
void flush_disk(fs::path const& work) {
  int fd = ::open(work.c_str(), O_RDONLY | O_DIRECTORY);
  bool synced = fd >= 0 && ::syncfs(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!synced) throw std::runtime_error("syncfs failed");
}

void write_random(fs::path const& p, std::size_t size, std::uint64_t seed) {
  fs::create_directories(p.parent_path());
  std::mt19937_64 rng(seed);
  std::vector<std::uint64_t> buf(std::min<std::size_t>(size, 1 << 20) / 8 + 1);
  std::ofstream out(p, std::ios::binary);
  for (std::size_t left = size; left > 0;) {
    for (auto& w : buf) w = rng();
    auto n = std::min(left, buf.size() * 8);
    out.write(reinterpret_cast<char const*>(buf.data()), static_cast<std::streamsize>(n));
    left -= n;
  }
}

std::int64_t make_site(fs::path const& dir, bool small) {
  int big = small ? 60 : 600, mids = small ? 20 : 200, smalls = small ? 500 : 5000;
  write_random(dir / "video" / "big.bin", std::size_t(big) << 20, 1);
  char name[64];
  for (int i = 0; i < mids; ++i) {
    std::snprintf(name, sizeof name, "img/i%d.jpg", i);
    write_random(dir / name, 1 << 20, 100 + i);
  }
  for (int i = 0; i < smalls; ++i) {
    std::snprintf(name, sizeof name, "pages/%d/p%d.html", i / 100, i);
    write_random(dir / name, 20 * 1024, 10000 + i);
  }
  return (std::int64_t(big) << 20) + (std::int64_t(mids) << 20) + std::int64_t(smalls) * 20 * 1024;
}

// With BENCH_KEEP_LOGS=DIR, nodes log at debug level and a follower's log of each run goes to
// DIR/<what>-<n>.log, to see where a slow run spent its time.
char const* keep_logs_dir() {
  char const* dir = std::getenv("BENCH_KEEP_LOGS");
  return dir && *dir ? dir : nullptr;
}

void keep_log(std::string const& what, std::string const& log) {
  static int n = 0;
  auto dir = keep_logs_dir();
  if (!dir) return;
  fs::create_directories(dir);
  std::ofstream(fs::path(dir) / (what + "-" + std::to_string(++n) + ".log")) << log;
}

struct node_proc {
  fs::path home;
  std::unique_ptr<outlast::test::process> proc;
  std::string endpoint;

  json cli(std::vector<std::string> args, fs::path const& capture) {
    args.insert(args.begin(), {binary, "--home", home.string()});
    args.push_back("--json");
    auto r = outlast::test::run(args, capture, 3600s);
    if (r.code != 0) throw std::runtime_error("outlast " + args[3] + " failed: " + r.err);
    return json::parse(r.out);
  }
  void start(fs::path const& capture, std::string const& bootstrap) {
    proc = std::make_unique<outlast::test::process>(
        std::vector<std::string>{binary, "--home", home.string(), "node", "--listen", "127.0.0.1:0", "--bootstrap", bootstrap,
                                 "--local-swarm", "--no-upnp", "--no-natpmp", "--no-lsd", "--poll-interval", "1", "--gateway", "127.0.0.1:0",
                                 "--log-level", keep_logs_dir() ? "debug" : "info"},
        capture);
    auto deadline = clk::now() + 30s;
    while (clk::now() < deadline) {
      std::vector<std::string> args = {binary, "--home", home.string(), "status", "--json"};
      auto r = outlast::test::run(args, capture, 10s);
      if (r.code == 0) {
        auto j = json::parse(r.out);
        if (!j["listen"].empty() && j["dht_running"].get<bool>()) {
          endpoint = j["listen"][0].get<std::string>();
          return;
        }
      }
      std::this_thread::sleep_for(50ms);
    }
    throw std::runtime_error("node did not start");
  }
  void stop() {
    if (!proc) return;
    proc->signal(SIGTERM);
    proc->wait(30s);
    proc.reset();
  }
};

// Seconds between the first log line containing `from` and the next containing `to`.
double log_span(std::string const& log, std::string const& from, std::string const& to) {
  auto a = log.find(from);
  if (a == std::string::npos) return 0;
  auto b = log.find(to, a);
  if (b == std::string::npos) return 0;
  auto stamp = [&](std::size_t pos) {
    auto line = log.rfind('\n', pos);
    line = line == std::string::npos ? 0 : line + 1;
    // 2026-11-28T02:09:44.501Z: seconds of the day are enough for a span under an hour
    int h = std::stoi(log.substr(line + 11, 2)), m = std::stoi(log.substr(line + 14, 2));
    double sec = std::stod(log.substr(line + 17, 6));
    return h * 3600 + m * 60 + sec;
  };
  return stamp(b) - stamp(a);
}

struct outlast_run {
  double publish_s, replicate_s, transfer_s;
  std::int64_t update_bytes;
  double update_s;
  std::int64_t update_mb_bytes;  // one 1 MB file changed
};

outlast_run run_outlast(fs::path const& work, fs::path const& site, std::int64_t changed_size) {
  auto homes = fresh_dir(work, "pair");
  node_proc a{homes / "a", nullptr, {}}, b{homes / "b", nullptr, {}};
  a.start(work, "none");
  b.start(work, a.endpoint);
  flush_disk(work);
  auto t0 = clk::now();
  auto pub = a.cli({"publish", site.string(), "--site", "bench"}, work);
  double publish_s = std::chrono::duration<double>(clk::now() - t0).count();
  auto address = pub["address"].get<std::string>();
  auto t1 = clk::now();
  b.cli({"follow", address}, work);
  auto wait_version = [&](std::int64_t v) {
    for (;;) {
      for (auto const& s : b.cli({"sites"}, work))
        if (s["address"] == address && s["version"].get<std::int64_t>() >= v && s["complete"].get<bool>()) return s;
      std::this_thread::sleep_for(20ms);
    }
  };
  wait_version(1);
  double replicate_s = std::chrono::duration<double>(clk::now() - t1).count();
  double transfer_s = log_span(b.proc->err(), "info sites: fetching", "info sites: mirrored");
  keep_log("pair", b.proc->err());
  // Update: one 20 KB page changes.
  write_random(site / "pages" / "0" / "p7.html", static_cast<std::size_t>(changed_size), 777);
  flush_disk(work);
  auto t2 = clk::now();
  a.cli({"publish", site.string(), "--site", "bench"}, work);
  auto s = wait_version(2);
  double update_s = std::chrono::duration<double>(clk::now() - t2).count();
  write_random(site / "pages" / "0" / "p7.html", static_cast<std::size_t>(changed_size), 10007);  // restore
  a.cli({"publish", site.string(), "--site", "bench"}, work);
  wait_version(3);
  // Update: one 1 MB image changes (whole 16 KiB blocks: no partial block at its end).
  write_random(site / "img" / "i7.jpg", 1 << 20, 888);
  a.cli({"publish", site.string(), "--site", "bench"}, work);
  auto s3 = wait_version(4);
  write_random(site / "img" / "i7.jpg", 1 << 20, 107);  // restore
  a.stop();
  b.stop();
  done_with(homes);
  return {publish_s, replicate_s, transfer_s, s["downloaded"].get<std::int64_t>(), update_s, s3["downloaded"].get<std::int64_t>()};
}

// Three seeders: a publisher and two mirrors; the reader follows once both mirrors are complete.
// Returns {end to end, transfer only} seconds of the reader.
std::pair<double, double> run_outlast_three(fs::path const& work, fs::path const& site) {
  auto homes = fresh_dir(work, "three");
  node_proc a{homes / "a", nullptr, {}}, m1{homes / "m1", nullptr, {}}, m2{homes / "m2", nullptr, {}}, r{homes / "r", nullptr, {}};
  a.start(work, "none");
  auto address = a.cli({"publish", site.string(), "--site", "bench"}, work)["address"].get<std::string>();
  auto complete = [&](node_proc& n) {
    for (;;) {
      for (auto const& s : n.cli({"sites"}, work))
        if (s["address"] == address && s["version"].get<std::int64_t>() >= 1 && s["complete"].get<bool>()) return;
      std::this_thread::sleep_for(20ms);
    }
  };
  for (auto* m : {&m1, &m2}) {
    m->start(work, a.endpoint);
    m->cli({"follow", address}, work);
  }
  complete(m1);
  complete(m2);
  r.start(work, a.endpoint);
  flush_disk(work);
  auto t0 = clk::now();
  r.cli({"follow", address}, work);
  complete(r);
  double end_to_end = std::chrono::duration<double>(clk::now() - t0).count();
  double transfer = log_span(r.proc->err(), "info sites: fetching", "info sites: mirrored");
  keep_log("three", r.proc->err());
  for (auto* n : {&a, &m1, &m2, &r}) n->stop();
  done_with(homes);
  return {end_to_end, transfer};
}

// Publish with --no-copy: hashing the publisher's own files in place (both cores), signing and
// announcing; nothing is copied. Seconds, as the CLI sees them.
double run_publish_no_copy(fs::path const& work, fs::path const& site) {
  auto homes = fresh_dir(work, "nocopy");
  node_proc a{homes / "a", nullptr, {}};
  a.start(work, "none");
  flush_disk(work);
  auto t0 = clk::now();
  auto pub = a.cli({"publish", site.string(), "--site", "bench", "--no-copy"}, work);
  double s = std::chrono::duration<double>(clk::now() - t0).count();
  if (pub.value("copied", true)) throw std::runtime_error("publish --no-copy copied the site");
  a.stop();
  done_with(homes);
  return s;
}

// A torrent of the site's files made by stock libtorrent (v1-only or v2-only, default piece size).
std::shared_ptr<lt::torrent_info> stock_torrent(fs::path const& site, lt::create_flags_t flags, std::vector<char>* raw = nullptr) {
  lt::file_storage fst;
  lt::add_files(fst, site.string());
  lt::create_torrent ct(fst, 0, flags);
  lt::set_piece_hashes(ct, site.parent_path().string());
  std::vector<char> buf;
  lt::bencode(std::back_inserter(buf), ct.generate());
  if (raw) *raw = buf;
  return std::make_shared<lt::torrent_info>(buf, lt::from_span);
}

// A stock session (bench/stock.hpp), TCP-only outgoing connections.
std::unique_ptr<lt::session> stock_session() {
  auto p = outlast::bench::stock_settings();
  // Same transport as Outlast's local swarm (TCP): loopback uTP is several times slower.
  p.set_bool(lt::settings_pack::enable_outgoing_utp, false);
  return std::make_unique<lt::session>(p);
}

std::unique_ptr<lt::session> stock_seed(std::shared_ptr<lt::torrent_info> const& ti, fs::path const& site) {
  auto seed = stock_session();
  lt::add_torrent_params sp;
  sp.ti = ti;
  sp.save_path = site.parent_path().string();
  sp.flags |= lt::torrent_flags::seed_mode;
  seed->add_torrent(sp);
  while (seed->listen_port() == 0) std::this_thread::sleep_for(5ms);
  return seed;
}

// `seeders` stock sessions seeding the torrent, and one fetching it from all of them: seconds
// from adding the torrent (metadata known) to finished.
double run_stock(fs::path const& work, fs::path const& site, std::shared_ptr<lt::torrent_info> const& ti, int seeders) {
  std::vector<std::unique_ptr<lt::session>> seeds;
  for (int i = 0; i < seeders; ++i) seeds.push_back(stock_seed(ti, site));
  auto leech = stock_session();
  lt::add_torrent_params lp;
  lp.ti = ti;
  auto dest = fresh_path(work, "reference");
  lp.save_path = dest.string();
  flush_disk(work);
  auto t0 = clk::now();
  auto h = leech->add_torrent(lp);
  for (auto const& seed : seeds) h.connect_peer({boost::asio::ip::make_address("127.0.0.1"), seed->listen_port()});
  while (!h.status().is_finished) std::this_thread::sleep_for(20ms);
  double s = std::chrono::duration<double>(clk::now() - t0).count();
  done_with(dest);
  return s;
}

// An HTTP tracker on loopback that names one peer to whoever announces (aria2c finds its seeder
// through it; it takes no peer on the command line).
class loopback_tracker {
 public:
  explicit loopback_tracker(std::uint16_t peer_port) : m_acceptor(m_ioc, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    std::string peer = {char(127), char(0), char(0), char(1), char(peer_port >> 8), char(peer_port & 0xff)};
    m_body = "d8:intervali1800e5:peers6:" + peer + "e";
    m_thread = std::thread([this] { serve(); });
  }
  ~loopback_tracker() {
    m_stop = true;
    boost::system::error_code ec;
    boost::asio::ip::tcp::socket s(m_ioc);
    s.connect(m_acceptor.local_endpoint(), ec);  // wakes the accept
    m_thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(m_acceptor.local_endpoint().port()) + "/announce"; }

 private:
  void serve() {
    while (!m_stop) {
      boost::asio::ip::tcp::socket s(m_ioc);
      boost::system::error_code ec;
      m_acceptor.accept(s, ec);
      if (ec || m_stop) return;
      boost::asio::streambuf req;
      boost::asio::read_until(s, req, "\r\n\r\n", ec);
      auto reply = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(m_body.size()) + "\r\n\r\n" + m_body;
      boost::asio::write(s, boost::asio::buffer(reply), ec);
    }
  }
  boost::asio::io_context m_ioc;
  boost::asio::ip::tcp::acceptor m_acceptor;
  std::string m_body;
  std::atomic<bool> m_stop{false};
  std::thread m_thread;
};

// aria2c fetching the v1 torrent from one stock seeder: seconds from start to its exit (it
// checks every piece as it arrives and exits once complete).
double run_aria2c(fs::path const& work, fs::path const& site, std::shared_ptr<lt::torrent_info> const& ti,
                  std::vector<char> const& raw) {
  auto seed = stock_seed(ti, site);
  loopback_tracker tracker(seed->listen_port());
  auto torrent = work / "v1.torrent";
  std::ofstream(torrent, std::ios::binary).write(raw.data(), static_cast<std::streamsize>(raw.size()));
  auto dest = fresh_path(work, "aria2c");
  std::vector<std::string> args{"aria2c", "--dir=" + dest.string(), "--seed-time=0", "--enable-dht=false", "--enable-dht6=false",
                                "--bt-enable-lpd=false", "--enable-peer-exchange=false", "--bt-tracker=" + tracker.url(),
                                "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn", "--quiet=true",
                                "--follow-torrent=false", torrent.string()};
  for (auto const* dir : {"/usr/bin", "/usr/local/bin"})
    if (fs::exists(fs::path(dir) / "aria2c")) args[0] = (fs::path(dir) / "aria2c").string();
  flush_disk(work);
  auto t0 = clk::now();
  auto r = outlast::test::run(args, work, 3600s);
  double s = std::chrono::duration<double>(clk::now() - t0).count();
  done_with(dest);
  if (r.code != 0) throw std::runtime_error("aria2c failed (scripts/install-deps.sh --bench installs it): " + r.err + r.out);
  return s;
}

// The single-core hashing floor: `openssl dgst -sha256` over every file of the site in one
// process (SHA-NI where the CPU has it). Files are in the page cache for both, as for publish.
double run_openssl(fs::path const& work, fs::path const& site) {
  std::string openssl_path = "openssl";
  for (auto const* dir : {"/usr/bin", "/usr/local/bin", "/bin"})
    if (fs::exists(fs::path(dir) / "openssl")) {
      openssl_path = (fs::path(dir) / "openssl").string();
      break;
    }
  std::vector<std::string> args{openssl_path, "dgst", "-sha256"};
  for (auto const& e : fs::recursive_directory_iterator(site))
    if (e.is_regular_file()) args.push_back(e.path().string());
  flush_disk(work);
  auto t0 = clk::now();
  auto r = outlast::test::run(args, work, 3600s);
  if (r.code != 0) throw std::runtime_error("openssl failed (scripts/install-deps.sh --bench installs it): " + r.err);
  return std::chrono::duration<double>(clk::now() - t0).count();
}

// A durable copy the common way: `cp -r` of the site (through the page cache), then one syncfs,
// as publish ends. Publish writes its larger files with O_DIRECT instead, past the page cache.
double run_copy_floor(fs::path const& work, fs::path const& site) {
  auto dest = fresh_path(work, "copy-floor");
  flush_disk(work);
  auto t0 = clk::now();
  auto r = outlast::test::run({"/bin/cp", "-r", site.string(), dest.string()}, work, 3600s);
  if (r.code != 0) throw std::runtime_error("cp failed: " + r.err);
  int fd = ::open(dest.c_str(), O_RDONLY | O_DIRECTORY);
  bool synced = fd >= 0 && ::syncfs(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!synced) throw std::runtime_error("syncfs failed");
  double s = std::chrono::duration<double>(clk::now() - t0).count();
  done_with(dest);
  return s;
}

// The device's floor for a durable copy: the site's bytes written as publish writes them (files
// of 1 MiB or more with O_DIRECT in whole 4 KiB sectors, the rest through the page cache), on
// as many threads as publish uses, then one syncfs: publish's copy without the hashing.
double run_write_floor(fs::path const& work, fs::path const& site) {
  auto dest = fresh_dir(work, "write-floor");
  std::vector<std::pair<fs::path, std::uintmax_t>> files;
  for (auto const& e : fs::recursive_directory_iterator(site))
    if (e.is_regular_file()) files.emplace_back(e.path(), e.file_size());
  std::sort(files.begin(), files.end(), [](auto const& a, auto const& b) { return a.second > b.second; });
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  flush_disk(work);
  auto t0 = clk::now();
  auto copy = [&] {
    constexpr std::size_t chunk = 1 << 20, sector = 4096;
    std::unique_ptr<char, decltype(&std::free)> buf(static_cast<char*>(std::aligned_alloc(sector, chunk)), &std::free);
    for (std::size_t k; (k = next++) < files.size();) {
      auto const& [src, size] = files[k];
      auto to = dest / src.lexically_relative(site);
      std::error_code ec;
      fs::create_directories(to.parent_path(), ec);
      bool direct = size >= chunk;
      int in = ::open(src.c_str(), O_RDONLY), out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0), 0644);
      for (std::uintmax_t off = 0; in >= 0 && out >= 0 && off < size; off += chunk) {
        auto n = ::pread(in, buf.get(), chunk, static_cast<off_t>(off));
        auto len = direct ? (static_cast<std::size_t>(n) + sector - 1) / sector * sector : static_cast<std::size_t>(n);
        if (n <= 0 || ::pwrite(out, buf.get(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) failed = true;
      }
      if (in < 0 || out < 0 || (direct && ::ftruncate(out, static_cast<off_t>(size)) != 0)) failed = true;
      if (in >= 0) ::close(in);
      if (out >= 0) ::close(out);
    }
  };
  std::vector<std::thread> pool;
  for (unsigned i = 0; i < std::min(16u, 4 * std::max(1u, std::thread::hardware_concurrency())); ++i) pool.emplace_back(copy);
  for (auto& t : pool) t.join();
  flush_disk(dest);
  double s = std::chrono::duration<double>(clk::now() - t0).count();
  if (failed) throw std::runtime_error("the write floor's copy failed (a filesystem without O_DIRECT?)");
  done_with(dest);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_replicate OUTLAST_BINARY [--small] [--runs N] [--outlast-only]\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines show as they happen, also in a log
  binary = argv[1];
  bool small = false, outlast_only = false;
  int runs = 3;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--small") small = true;
    else if (a == "--runs" && i + 1 < argc) runs = std::atoi(argv[++i]);
    else if (a == "--outlast-only") outlast_only = true;  // for trying a change: no references, no table
  }
  outlast::test::temp_dir work;
  auto site = work / "site";
  std::printf("bench_replicate: generating the %s site...\n", small ? "small" : "standard");
  auto bytes = make_site(site, small);
  double mb = bytes / 1e6;
  // Each run leaves 13 copies of the site (two Outlast pairs' worth of nodes, four stock
  // downloads, aria2c's, the two copy floors'); a tenth more for the rest.
  std::error_code space_ec;
  auto space = fs::space(work.path(), space_ec);
  double wanted = 1.1 * 13 * runs * static_cast<double>(bytes);
  if (space_ec || static_cast<double>(space.available) < wanted) {
    keep_all = false;
    std::printf("bench_replicate: %.1f GB free, under the %.1f GB that keeping every run's copies takes: each goes after its run,\n"
                "  and file creation right after deleting thousands of files may weigh on publish and the downloads\n",
                space_ec ? 0.0 : static_cast<double>(space.available) / 1e9, wanted / 1e9);
  }
  wait_for_quiet_filesystem(work.path());
  std::shared_ptr<lt::torrent_info> ti_v2, ti_v1;  // the references' torrents: none with --outlast-only
  std::vector<char> raw_v1;
  if (!outlast_only) {
    std::printf("bench_replicate: making the stock v2 and v1 torrents of it (not timed)...\n");
    ti_v2 = stock_torrent(site, lt::create_torrent::v2_only);
    ti_v1 = stock_torrent(site, lt::create_torrent::v1_only, &raw_v1);
  }
  std::vector<double> publish, publish_nc, replicate, transfer, update_s, openssl, copy_floor, write_floor, three, three_xfer;
  std::vector<double> stock_v2, stock_v1, aria2c, stock3_v2, stock3_v1;
  std::vector<std::int64_t> update_bytes, update_mb_bytes;
  for (int r = 0; r < runs; ++r) {
    auto o = run_outlast(work.path(), site, 20 * 1024);
    publish.push_back(o.publish_s);
    replicate.push_back(o.replicate_s);
    transfer.push_back(o.transfer_s);
    update_bytes.push_back(o.update_bytes);
    update_s.push_back(o.update_s);
    update_mb_bytes.push_back(o.update_mb_bytes);
    auto [t3, x3] = run_outlast_three(work.path(), site);
    three.push_back(t3);
    three_xfer.push_back(x3);
    if (outlast_only) {
      std::printf("  run %d: publish %.2f s; replicate %.2f s (transfer %.2f s, %.1f MB/s); 3 seeders %.2f s (transfer %.2f s, %.1f MB/s);\n"
                  "         update %lld bytes in %.2f s\n",
                  r + 1, o.publish_s, o.replicate_s, o.transfer_s, mb / o.replicate_s, t3, x3, mb / t3,
                  static_cast<long long>(o.update_bytes), o.update_s);
      continue;
    }
    stock_v2.push_back(run_stock(work.path(), site, ti_v2, 1));
    stock_v1.push_back(run_stock(work.path(), site, ti_v1, 1));
    aria2c.push_back(run_aria2c(work.path(), site, ti_v1, raw_v1));
    stock3_v2.push_back(run_stock(work.path(), site, ti_v2, 3));
    stock3_v1.push_back(run_stock(work.path(), site, ti_v1, 3));
    publish_nc.push_back(run_publish_no_copy(work.path(), site));
    openssl.push_back(run_openssl(work.path(), site));
    copy_floor.push_back(run_copy_floor(work.path(), site));
    write_floor.push_back(run_write_floor(work.path(), site));
    std::printf("  run %d: publish %.2f s (--no-copy %.2f s, openssl %.2f s, O_DIRECT copy %.2f s); replicate %.2f s (transfer %.2f s), stock v2 %.2f s, stock v1 %.2f s, aria2c %.2f s;\n"
                "         3 seeders %.2f s (transfer %.2f s), stock v2 %.2f s, stock v1 %.2f s; update %lld bytes in %.2f s\n",
                r + 1, o.publish_s, publish_nc.back(), openssl.back(), write_floor.back(), o.replicate_s, o.transfer_s, stock_v2.back(), stock_v1.back(), aria2c.back(), t3, x3,
                stock3_v2.back(), stock3_v1.back(), static_cast<long long>(o.update_bytes), o.update_s);
  }
  if (outlast_only) return 0;
  auto median = [](auto v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto rate = [&](std::vector<double> const& secs) { return mb / median(secs); };
  double rep = rate(replicate), xfer = rate(transfer), v2 = rate(stock_v2), v1 = rate(stock_v1), ar = rate(aria2c);
  double rep3 = rate(three), xfer3 = rate(three_xfer), v2_3 = rate(stock3_v2), v1_3 = rate(stock3_v1);
  double best1 = std::max({v2, v1, ar}), best3 = std::max(v2_3, v1_3);
  auto best1_name = best1 == v1 ? "stock v1 pair" : best1 == v2 ? "stock v2 pair" : "aria2c (v1)";
  auto best3_name = best3 == v1_3 ? "stock v1, 3 seeders" : "stock v2, 3 seeders";
  std::printf("\n%-38s %10s %14s %28s %8s\n", "workload", "size", "outlast", "reference", "ratio");
  std::printf("%-38s %7.0f MB %11.2f s %21.2f s openssl %8.2f\n", "publish (copy + hash + sign)", mb, median(publish), median(openssl),
              median(publish) / median(openssl));
  std::printf("%-38s %7.0f MB %11.2f s %19.2f s cp+syncfs %8.2f\n", "publish vs a durable copy", mb, median(publish),
              median(copy_floor), median(publish) / median(copy_floor));
  std::printf("%-38s %7.0f MB %11.2f s %13.2f s O_DIRECT copy %8.2f\n", "publish vs the same copy, unhashed", mb, median(publish),
              median(write_floor), median(publish) / median(write_floor));
  std::printf("%-38s %7.0f MB %11.2f s %21.2f s openssl %8.2f\n", "publish --no-copy (hash + sign)", mb, median(publish_nc),
              median(openssl), median(publish_nc) / median(openssl));
  auto mbs_row = [&](char const* what, double ours, double ref, char const* ref_name) {
    std::printf("%-38s %7.0f MB %9.1f MB/s %12.1f MB/s %-13s %6.2f\n", what, mb, ours, ref, ref_name, ours / ref);
  };
  mbs_row("replicate, 1 seed, end to end", rep, v2, "stock v2 pair");
  mbs_row("", rep, v1, "stock v1 pair");
  mbs_row("", rep, ar, "aria2c (v1)");
  mbs_row("replicate, 1 seed, transfer only", xfer, best1, "best of above");
  mbs_row("replicate, 3 seeds, end to end", rep3, v2_3, "stock v2");
  mbs_row("", rep3, v1_3, "stock v1");
  mbs_row("replicate, 3 seeds, transfer only", xfer3, best3, "best of above");
  std::printf("%-38s %7.0f kB %9lld B   %19d B changed %6.2f\n", "update one 20 KB file: bytes moved", 20.48,
              static_cast<long long>(median(update_bytes)), 20 * 1024, median(update_bytes) / (20.0 * 1024));
  std::printf("%-38s %10s %11.2f s\n", "update one 20 KB file: wall time", "", median(update_s));
  std::printf("%-38s %7.0f kB %9lld B   %19d B changed %6.2f\n", "update one 1 MB file: bytes moved", 1048.6,
              static_cast<long long>(median(update_mb_bytes)), 1 << 20, median(update_mb_bytes) / double(1 << 20));
  std::printf("(median of %d runs. End to end: from `outlast follow` until `sites` says complete, with the DHT lookups of\n"
              " pointer and peers. Transfer only: from the follower adding the torrent to its finishing, metadata included.\n"
              " Stock references: libtorrent %s sessions with default settings (TCP), connected directly, starting with the\n"
              " metadata; aria2c fetches the v1 torrent from a stock seeder found through a loopback tracker, timed from\n"
              " start to exit. 3 seeds: Outlast's publisher and two mirrors, stock: three seeding sessions. Publish is\n"
              " compared with `openssl dgst -sha256` over the same files in one process, the single-core hashing floor\n"
              " (target <= 1.0), and with `cp -r` + syncfs, a durable copy made through the page cache (publish writes\n"
              " its files of 1 MiB or more with O_DIRECT, so it can beat this), and with that same copy made without hashing\n"
              " (O_DIRECT copy, then syncfs): the device's floor for publish, which openssl, writing nothing, does not pay;\n"
              " publish --no-copy seeds the directory itself: hashing on both cores, nothing copied. Every timed step\n"
              " starts with the filesystem's dirty pages written back (syncfs, not timed), so none pays for the one before.\n"
              " Files of up to 1 MiB come whole from a peer, on a first fetch and an update (net/detail/small_files.hpp); through\n"
              " the swarm alone a changed 20 KB file would move 32 KiB: libtorrent 2.0 requests the block that ends a file whole,\n"
              " padding included.)\n",
              runs, LIBTORRENT_VERSION);
  using outlast::bench::summary_row;
  auto site_name = std::string(small ? "small site" : "standard site");
  summary_row("replicate", "publish, " + site_name, median(publish), median(openssl), "s", "openssl dgst -sha256", false, "<= 1.0x openssl");
  summary_row("replicate", "publish --no-copy, " + site_name, median(publish_nc), median(openssl), "s", "openssl dgst -sha256", false,
              "<= 1.0x openssl");
  summary_row("replicate", "publish, " + site_name + " (vs a copy)", median(publish), median(copy_floor), "s", "cp -r + syncfs", false);
  summary_row("replicate", "publish, " + site_name + " (vs its copy alone)", median(publish), median(write_floor), "s",
              "O_DIRECT copy + syncfs", false);
  summary_row("replicate", "replicate end to end, " + site_name, rep, v2, "MB/s", "stock libtorrent v2 pair", true, ">= 1.0x");
  summary_row("replicate", "replicate end to end, " + site_name, rep, v1, "MB/s", "stock libtorrent v1 pair", true, ">= 1.0x");
  summary_row("replicate", "replicate end to end, " + site_name, rep, ar, "MB/s", "aria2c, v1 torrent", true, ">= 1.0x");
  summary_row("replicate", "replicate transfer only, " + site_name, xfer, best1, "MB/s", best1_name, true, ">= 1.0x best");
  summary_row("replicate", "replicate from 3 seeds end to end, " + site_name, rep3, best3, "MB/s", best3_name, true, ">= 1.0x best");
  summary_row("replicate", "replicate from 3 seeds transfer only, " + site_name, xfer3, best3, "MB/s", best3_name, true, ">= 1.0x best");
  summary_row("replicate", "update one 20 KB file: bytes moved", double(median(update_bytes)), 20 * 1024, "B", "bytes changed", false,
              "<= 1.05x changed");
  summary_row("replicate", "update one 1 MB file: bytes moved", double(median(update_mb_bytes)), 1 << 20, "B", "bytes changed", false,
              "<= 1.05x changed");
  summary_row("replicate", "update one 20 KB file: wall time", median(update_s), 0, "s", "", false);
  fs::create_directories("bench/results");
  std::ofstream("bench/results/replicate.jsonl", std::ios::app)
      << json{{"workload", "replicate"}, {"site", small ? "small" : "standard"}, {"mb", mb}, {"runs", runs},
              {"publish_s", median(publish)}, {"publish_no_copy_s", median(publish_nc)}, {"openssl_s", median(openssl)}, {"replicate_mb_s", rep}, {"transfer_mb_s", xfer},
              {"stock_v2_mb_s", v2}, {"stock_v1_mb_s", v1}, {"aria2c_mb_s", ar}, {"three_mb_s", rep3}, {"three_transfer_mb_s", xfer3},
              {"stock3_v2_mb_s", v2_3}, {"stock3_v1_mb_s", v1_3}, {"update_bytes", median(update_bytes)}, {"update_s", median(update_s)},
              {"copy_floor_s", median(copy_floor)}, {"write_floor_s", median(write_floor)}, {"update_1mb_bytes", median(update_mb_bytes)}}.dump()
      << "\n";
  return 0;
}
