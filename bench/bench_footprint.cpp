// bench_footprint: what a mirror costs while it waits. A follower mirrors N small sites (default
// 100 and 1,000, one publisher) on loopback; then, idle for 10 s, its resident memory and CPU
// are read from /proc, beside a stock libtorrent session seeding the same N torrents in this
// process (the reference, measured in the same run). Also: time from `outlast node` starting to
// its gateway answering, with the N sites held.
//
//   bench_footprint OUTLAST_BINARY [--sites 100,1000]
#include <libtorrent/session.hpp>
#include <libtorrent/torrent_info.hpp>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench/stock.hpp"
#include "bench/summary.hpp"
#include "net/local_http.hpp"
#include "tests/support/http.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

std::string binary;

json control(fs::path const& home, std::string const& method, std::string const& target, std::string const& body = "") {
  auto r = outlast::net::local_http_call(home / "control.sock", {method, target, body}, 120s);
  if (!r) throw std::runtime_error(target + ": " + r.err().message);
  if (r->status != 200) throw std::runtime_error(target + ": " + r->body);
  return json::parse(r->body);
}

std::unique_ptr<outlast::test::process> start(fs::path const& home, fs::path const& capture, std::vector<std::string> flags) {
  std::vector<std::string> args{binary, "--home", home.string(), "node", "--listen", "127.0.0.1:0", "--local-swarm", "--no-upnp",
                                "--no-natpmp", "--no-lsd", "--log-level", "warning"};
  args.insert(args.end(), flags.begin(), flags.end());
  return std::make_unique<outlast::test::process>(args, capture);
}

json wait_status(fs::path const& home, clk::duration timeout) {
  auto deadline = clk::now() + timeout;
  while (clk::now() < deadline) {
    auto r = outlast::net::local_http_call(home / "control.sock", {"GET", "/v1/status", ""}, 5s);
    if (r && r->status == 200) {
      auto j = json::parse(r->body);
      if (!j["listen"].empty()) return j;
    }
    std::this_thread::sleep_for(20ms);
  }
  throw std::runtime_error("node did not start");
}

long rss_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rest(all.substr(all.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
}

struct figures {
  long rss_kb = 0, ref_rss_kb = 0;
  double idle_cpu_pct = 0, ref_idle_cpu_pct = 0, start_to_serving_s = 0;
};

figures run(int n) {
  outlast::test::temp_dir base;
  auto pub_home = base / "publisher", mirror_home = base / "mirror";
  auto pub = start(pub_home, base.path(), {"--bootstrap", "none", "--gateway", "off"});
  auto pub_status = wait_status(pub_home, 30s);
  auto pub_ep = pub_status["listen"][0].get<std::string>();
  std::vector<std::string> addresses;
  std::vector<std::string> torrents;
  for (int i = 0; i < n; ++i) {
    auto dir = base / "sites" / ("s" + std::to_string(i));
    fs::create_directories(dir);
    std::ofstream(dir / "index.html") << "<!doctype html><title>Site " << i << "</title><h1>Site " << i << "</h1>\n"
                                       << std::string(1000, 'x') << "\n";
    std::ofstream(dir / "style.css") << "body { margin: " << i % 7 << "px }\n";
    auto r = control(pub_home, "POST", "/v1/publish", json{{"dir", dir.string()}, {"site", "s" + std::to_string(i)}, {"key", "default"}}.dump());
    addresses.push_back(r["address"].get<std::string>());
  }
  std::printf("  %d sites published\n", n);
  auto mirror = start(mirror_home, base.path(), {"--bootstrap", pub_ep, "--peer", pub_ep, "--gateway", "127.0.0.1:0"});
  wait_status(mirror_home, 30s);
  for (auto const& a : addresses) control(mirror_home, "POST", "/v1/follow", json{{"address", a}}.dump());
  auto deadline = clk::now() + std::chrono::seconds(120 + n / 2);
  for (;;) {
    int complete = 0;
    for (auto const& s : control(mirror_home, "GET", "/v1/sites")) complete += s["complete"].get<bool>() ? 1 : 0;
    if (complete == n) break;
    if (clk::now() > deadline) throw std::runtime_error("only " + std::to_string(complete) + " of the sites were mirrored in time");
    std::this_thread::sleep_for(500ms);
  }
  std::printf("  %d sites mirrored; idle for 10 s\n", n);
  std::fflush(stdout);
  figures f;
  auto pid = control(mirror_home, "GET", "/v1/status")["pid"].get<int>();
  std::this_thread::sleep_for(3s);  // let the last completions settle: measuring idle, not waiting on a condition
  auto c0 = cpu_seconds(pid);
  std::this_thread::sleep_for(10s);
  f.idle_cpu_pct = 100.0 * (cpu_seconds(pid) - c0) / 10.0;
  f.rss_kb = rss_kb(pid);
  std::printf("  idle with %d peer connections\n", control(mirror_home, "GET", "/v1/status")["peers"].get<int>());

  // Start to serving, with the N sites held.
  mirror->signal(SIGTERM);
  mirror->wait(60s);
  auto t0 = clk::now();
  mirror = start(mirror_home, base.path(), {"--bootstrap", pub_ep, "--peer", pub_ep, "--gateway", "127.0.0.1:0"});
  for (;;) {
    auto r = outlast::net::local_http_call(mirror_home / "control.sock", {"GET", "/v1/status", ""}, 5s);
    if (r && r->status == 200) {
      auto gw = json::parse(r->body)["gateway"];
      if (gw.is_string()) {
        auto port = std::stoi(gw.get<std::string>().substr(gw.get<std::string>().rfind(':') + 1));
        if (outlast::test::http_get(port, "127.0.0.1", "/").status == 200) break;
      }
    }
    if (clk::now() - t0 > 120s) throw std::runtime_error("the gateway did not answer after a restart");
    std::this_thread::sleep_for(5ms);
  }
  f.start_to_serving_s = std::chrono::duration<double>(clk::now() - t0).count();
  mirror->signal(SIGTERM);
  mirror->wait(60s);
  pub->signal(SIGTERM);
  pub->wait(60s);

  // Reference: a stock session seeding the same N versions (the mirror's .torrent files).
  {
    auto self = ::getpid();
    auto before = rss_kb(self);
    lt::session ses(outlast::bench::stock_settings());
    int added = 0;
    for (auto const& e : fs::recursive_directory_iterator(mirror_home / "sites")) {
      if (e.path().extension() != ".torrent") continue;
      lt::add_torrent_params atp;
      atp.ti = std::make_shared<lt::torrent_info>(e.path().string());
      atp.save_path = e.path().parent_path().string() + "/" + e.path().stem().string();
      atp.flags |= lt::torrent_flags::seed_mode;
      ses.add_torrent(atp);
      ++added;
    }
    std::this_thread::sleep_for(3s);
    auto c0r = cpu_seconds(self);
    std::this_thread::sleep_for(10s);
    f.ref_idle_cpu_pct = 100.0 * (cpu_seconds(self) - c0r) / 10.0;
    f.ref_rss_kb = rss_kb(self) - before;
    std::printf("  reference: a stock session seeding %d torrents\n", added);
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_footprint OUTLAST_BINARY [--sites 100,1000]\n");
    return 2;
  }
  binary = argv[1];
  std::vector<int> counts{100, 1000};
  for (int i = 2; i + 1 < argc; i += 2)
    if (std::string(argv[i]) == "--sites") {
      counts.clear();
      std::stringstream list(argv[i + 1]);
      for (std::string item; std::getline(list, item, ',');) counts.push_back(std::stoi(item));
    }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("bench_footprint: one follower mirroring N small sites on loopback\n");
  try {
    std::vector<std::pair<int, figures>> all;
    for (int n : counts) {
      std::printf("%d sites:\n", n);
      all.emplace_back(n, run(n));
    }
    std::printf("\n%-30s %12s %16s %8s\n", "workload", "outlast", "stock libtorrent", "ratio");
    fs::create_directories("bench/results");
    std::ofstream out("bench/results/footprint.jsonl", std::ios::app);
    for (auto const& [n, f] : all) {
      char label[64];
      std::snprintf(label, sizeof label, "RSS, %d sites", n);
      std::printf("%-30s %9.1f MB %13.1f MB %8.2f\n", label, f.rss_kb / 1024.0, f.ref_rss_kb / 1024.0,
                  f.ref_rss_kb > 0 ? double(f.rss_kb) / double(f.ref_rss_kb) : 0.0);
      std::snprintf(label, sizeof label, "idle CPU, %d sites", n);
      std::printf("%-30s %10.2f %% %14.2f %% \n", label, f.idle_cpu_pct, f.ref_idle_cpu_pct);
      std::snprintf(label, sizeof label, "start to serving, %d sites", n);
      std::printf("%-30s %10.2f s\n", label, f.start_to_serving_s);
      using outlast::bench::summary_row;
      auto sites = std::to_string(n) + " sites";
      summary_row("footprint", "RSS, " + sites, f.rss_kb / 1024.0, f.ref_rss_kb / 1024.0, "MB", "stock session, same torrents", false);
      summary_row("footprint", "idle CPU, " + sites, f.idle_cpu_pct, f.ref_idle_cpu_pct, "%", "stock session, same torrents", false);
      summary_row("footprint", "start to serving, " + sites, f.start_to_serving_s, 0, "s", "", false);
      out << json{{"workload", "footprint"}, {"sites", n}, {"rss_kb", f.rss_kb}, {"ref_rss_kb", f.ref_rss_kb},
                  {"idle_cpu_pct", f.idle_cpu_pct}, {"ref_idle_cpu_pct", f.ref_idle_cpu_pct}, {"start_to_serving_s", f.start_to_serving_s}}
                 .dump()
          << "\n";
    }
    std::printf("(RSS of the whole `outlast node` process, gateway, store and DHT included; the reference is the RSS a\n"
                " stock session with the same torrents adds to this process, so the ratio overstates Outlast's share.)\n");
    return 0;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "bench_footprint: %s\n", e.what());
    return 1;
  }
}
