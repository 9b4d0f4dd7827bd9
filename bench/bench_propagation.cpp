// bench_propagation: how fast a notice and a new version reach every mirror. One publisher and
// N followers (default 20) on loopback, each follower knowing 3-4 others as static peers and the
// publisher known to 2, all in one private DHT. Measured three times: with push (the default),
// with push and no static peers (the nodes find each other through the DHT alone, as users'
// nodes do), and with push switched off (DHT polling alone, at the poll interval given).
//
//   bench_propagation OUTLAST_BINARY [--nodes N] [--notices N] [--updates N]
//                     [--dht-rounds N] [--dht-poll SECONDS]
//
// A sample is the time from the publisher accepting its own record until the last follower has
// accepted it, both read from the nodes' own clocks (GET /v1/records, `received_ms`), so polling
// the nodes does not add to it.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "bench/summary.hpp"
#include "net/local_http.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

std::string binary;

struct node_proc {
  fs::path home;
  std::unique_ptr<outlast::test::process> proc;
  std::string endpoint;

  json control(std::string const& method, std::string const& target, std::string const& body = "") const {
    auto r = outlast::net::local_http_call(home / "control.sock", {method, target, body}, 30s);
    if (!r) throw std::runtime_error(home.filename().string() + ": " + r.err().message);
    if (r->status != 200) throw std::runtime_error(home.filename().string() + " " + target + ": " + r->body);
    return json::parse(r->body);
  }
  void start(fs::path const& capture, std::vector<std::string> flags) {
    std::vector<std::string> args{binary, "--home", home.string(), "node", "--listen", "127.0.0.1:0", "--local-swarm", "--no-upnp",
                                  "--no-natpmp", "--no-lsd", "--gateway", "off", "--log-level", std::getenv("BENCH_DEBUG") ? "debug" : "warning"};
    args.insert(args.end(), flags.begin(), flags.end());
    proc = std::make_unique<outlast::test::process>(args, capture);
    auto deadline = clk::now() + 30s;
    while (clk::now() < deadline) {
      auto r = outlast::net::local_http_call(home / "control.sock", {"GET", "/v1/status", ""}, 5s);
      if (r && r->status == 200) {
        auto j = json::parse(r->body);
        if (!j["listen"].empty() && j["dht_running"].get<bool>()) {
          endpoint = j["listen"][0].get<std::string>();
          return;
        }
      }
      std::this_thread::sleep_for(50ms);
    }
    throw std::runtime_error("node did not start:\n" + proc->err());
  }
  void stop() {
    if (!proc) return;
    proc->signal(SIGTERM);
    proc->wait(30s);
    proc.reset();
  }
  // seq and received_ms of this node's newest record for (key, salt); seq -1 when none.
  std::pair<std::int64_t, std::int64_t> record(std::string const& key, std::string const& salt) const {
    for (auto const& r : control("GET", "/v1/records?key=" + key))
      if (r["salt"] == salt) return {r["seq"].get<std::int64_t>(), r.value("received_ms", std::int64_t(0))};
    return {-1, 0};
  }
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(idx, v.size() - 1)];
}

struct figures {
  std::vector<double> notice_last, notice_each, update_last, update_each;  // milliseconds
  int missed = 0;
};

// Waits until every follower holds `seq` for (key, salt); returns the last one's delay after t0.
std::optional<double> wait_all(std::vector<node_proc> const& followers, std::string const& key, std::string const& salt,
                               std::int64_t seq, std::int64_t t0_ms, clk::duration timeout, std::vector<double>* each) {
  std::vector<std::int64_t> got(followers.size(), 0);
  auto deadline = clk::now() + timeout;
  while (clk::now() < deadline) {
    bool all = true;
    for (std::size_t i = 0; i < followers.size(); ++i) {
      if (got[i]) continue;
      auto [s, ms] = followers[i].record(key, salt);
      if (s >= seq && ms > 0) got[i] = ms;
      else all = false;
    }
    if (all) {
      double last = 0;
      for (auto ms : got) {
        last = std::max(last, double(ms - t0_ms));
        if (each) each->push_back(double(ms - t0_ms));
      }
      return last;
    }
    std::this_thread::sleep_for(50ms);
  }
  return std::nullopt;
}

// `static_peers` false: the followers know only the publisher as their DHT bootstrap node, and
// find the publisher's other nodes (push connections included) through the DHT, as users do.
figures run_mode(bool push, bool static_peers, int n_nodes, int notices, int updates, int poll_s) {
  outlast::test::temp_dir base;
  auto site = base / "site";
  fs::create_directories(site);
  std::ofstream(site / "index.html") << "<!doctype html><title>News</title><h1>Edition 1</h1>\n";
  std::ofstream(site / "style.css") << "body { font-family: serif; }\n";

  // Re-announcing every 30 s keeps the first pointer findable in a DHT of 21 nodes that grows
  // while the followers start (what the publisher put at first went to the few nodes there were).
  std::vector<std::string> common{"--poll-interval", std::to_string(poll_s), "--republish-interval", "30"};
  if (!push) common.push_back("--no-push");
  node_proc pub{base / "publisher", nullptr, ""};
  auto flags = common;
  flags.insert(flags.end(), {"--bootstrap", "none"});
  pub.start(base.path(), flags);
  auto published = pub.control("POST", "/v1/publish", json{{"dir", site.string()}, {"site", "news"}, {"key", "default"}}.dump());
  auto address = published["address"].get<std::string>();
  auto key = address.substr(0, address.find('/'));

  std::mt19937 rng(42);
  std::vector<node_proc> followers(static_cast<std::size_t>(n_nodes));
  for (int i = 0; i < n_nodes; ++i) {
    auto& f = followers[static_cast<std::size_t>(i)];
    f.home = base / ("m" + std::to_string(i));
    auto fl = common;
    fl.insert(fl.end(), {"--bootstrap", pub.endpoint});
    std::set<int> peers;
    int want = 3 + static_cast<int>(rng() % 2);
    while (static_cast<int>(peers.size()) < std::min(want, i)) peers.insert(static_cast<int>(rng() % static_cast<unsigned>(i)));
    if (static_peers) {
      if (i < 2) fl.insert(fl.end(), {"--peer", pub.endpoint});
      for (int p : peers) fl.insert(fl.end(), {"--peer", followers[static_cast<std::size_t>(p)].endpoint});
    }
    f.start(base.path(), fl);
    f.control("POST", "/v1/follow", json{{"address", address}}.dump());
  }
  std::printf("  %s: %d followers started, waiting for the site everywhere...\n",
              !push ? "DHT only" : static_peers ? "push" : "push, peers from the DHT", n_nodes);
  std::fflush(stdout);
  auto deadline = clk::now() + 180s;
  for (auto& f : followers) {
    for (;;) {
      bool done = false;
      for (auto const& s : f.control("GET", "/v1/sites"))
        if (s["address"] == address && s["complete"].get<bool>()) done = true;
      if (done) break;
      if (clk::now() > deadline)
        throw std::runtime_error("the site did not reach " + f.home.filename().string() + ": " + f.control("GET", "/v1/sites").dump() +
                                 "\n" + f.proc->err().substr(f.proc->err().size() > 3000 ? f.proc->err().size() - 3000 : 0));
      std::this_thread::sleep_for(100ms);
    }
    if (push)
      while (f.control("GET", "/v1/status")["push"]["peers"].get<int>() < 1) {
        if (clk::now() > deadline) throw std::runtime_error("a follower has no push peer");
        std::this_thread::sleep_for(100ms);
      }
  }

  figures out;
  auto timeout = push ? clk::duration(10s) : clk::duration(std::chrono::seconds(poll_s * 4 + 20));
  for (int k = 1; k <= notices; ++k) {
    auto posted = pub.control("POST", "/v1/notices", json{{"text", "notice " + std::to_string(k)}, {"key", "default"}}.dump());
    auto seq = posted["seq"].get<std::int64_t>();
    auto t0 = pub.record(key, ".notice").second;
    auto last = wait_all(followers, key, ".notice", seq, t0, timeout, &out.notice_each);
    if (last) out.notice_last.push_back(*last);
    else ++out.missed;
  }
  for (int k = 0; k < updates; ++k) {
    std::ofstream(site / "index.html") << "<!doctype html><title>News</title><h1>Edition " << k + 2 << "</h1>\n";
    auto v = pub.control("POST", "/v1/publish", json{{"dir", site.string()}, {"site", "news"}, {"key", "default"}}.dump());
    auto seq = v["version"].get<std::int64_t>();
    auto t0 = pub.record(key, "news").second;
    auto last = wait_all(followers, key, "news", seq, t0, timeout, &out.update_each);
    if (last) out.update_last.push_back(*last);
    else ++out.missed;
  }
  for (auto& f : followers) f.stop();
  pub.stop();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_propagation OUTLAST_BINARY [--nodes N] [--notices N] [--updates N] [--dht-rounds N] [--dht-poll S]\n");
    return 2;
  }
  binary = argv[1];
  int nodes = 20, notices = 50, updates = 20, dht_rounds = 5, dht_poll = 5;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (a == "--nodes") nodes = v;
    else if (a == "--notices") notices = v;
    else if (a == "--updates") updates = v;
    else if (a == "--dht-rounds") dht_rounds = v;
    else if (a == "--dht-poll") dht_poll = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  std::printf("bench_propagation: 1 publisher, %d followers on loopback, 3-4 static peers each\n", nodes);
  try {
    if (std::getenv("BENCH_DHT_ONLY")) {  // for investigating the DHT-only path alone
      auto d = run_mode(false, true, nodes, dht_rounds, dht_rounds, dht_poll);
      std::printf("DHT only: notice p50 %.0f ms, update p50 %.0f ms, missed %d\n", percentile(d.notice_last, 0.5),
                  percentile(d.update_last, 0.5), d.missed);
      return 0;
    }
    auto p = run_mode(true, true, nodes, notices, updates, 600);
    std::printf("  push: notice p50 %.1f ms p99 %.1f ms; new version p50 %.1f ms p99 %.1f ms\n", percentile(p.notice_last, 0.5),
                percentile(p.notice_last, 0.99), percentile(p.update_last, 0.5), percentile(p.update_last, 0.99));
    std::fflush(stdout);
    auto q = run_mode(true, false, nodes, notices, updates, 600);
    std::printf("  push, peers from the DHT: notice p50 %.1f ms p99 %.1f ms; new version p50 %.1f ms p99 %.1f ms\n",
                percentile(q.notice_last, 0.5), percentile(q.notice_last, 0.99), percentile(q.update_last, 0.5),
                percentile(q.update_last, 0.99));
    std::fflush(stdout);
    auto d = run_mode(false, true, nodes, dht_rounds, dht_rounds, dht_poll);
    std::printf("\n%-44s %8s %10s %10s %10s\n", "workload (time until the last node has it)", "samples", "p50 ms", "p99 ms", "missed");
    std::printf("%-44s %8zu %10.1f %10.1f %10d\n", "notice, push", p.notice_last.size(), percentile(p.notice_last, 0.5),
                percentile(p.notice_last, 0.99), p.missed);
    std::printf("%-44s %8zu %10.1f %10.1f\n", "new version pointer, push", p.update_last.size(), percentile(p.update_last, 0.5),
                percentile(p.update_last, 0.99));
    std::printf("%-44s %8zu %10.1f %10.1f %10d\n", "notice, push, peers from the DHT", q.notice_last.size(),
                percentile(q.notice_last, 0.5), percentile(q.notice_last, 0.99), q.missed);
    std::printf("%-44s %8zu %10.1f %10.1f\n", "new version pointer, push, peers from DHT", q.update_last.size(),
                percentile(q.update_last, 0.5), percentile(q.update_last, 0.99));
    char label[80];
    std::snprintf(label, sizeof label, "notice, DHT only (poll every %d s)", dht_poll);
    std::printf("%-44s %8zu %10.1f %10.1f %10d\n", label, d.notice_last.size(), percentile(d.notice_last, 0.5),
                percentile(d.notice_last, 0.99), d.missed);
    std::snprintf(label, sizeof label, "new version pointer, DHT only (poll %d s)", dht_poll);
    std::printf("%-44s %8zu %10.1f %10.1f\n", label, d.update_last.size(), percentile(d.update_last, 0.5),
                percentile(d.update_last, 0.99));
    std::printf("%-44s %8zu %10.1f %10.1f\n", "notice, push, any one node", p.notice_each.size(), percentile(p.notice_each, 0.5),
                percentile(p.notice_each, 0.99));
    std::printf("%-44s %8zu %10.1f %10.1f\n", "new version pointer, push, any one node", p.update_each.size(),
                percentile(p.update_each, 0.5), percentile(p.update_each, 0.99));
    std::printf("(targets: push p50 <= 100 ms, p99 <= 500 ms. DHT only waits for the poll interval: %d s here,\n"
                " 600 s by default, so a default node sees a notice about 5 minutes late on average.)\n", dht_poll);
    using outlast::bench::summary_row;
    auto nodes_text = std::to_string(nodes) + " nodes";
    summary_row("propagation", "notice, push, p50, " + nodes_text, percentile(p.notice_last, 0.5), percentile(d.notice_last, 0.5), "ms",
                "DHT only, poll " + std::to_string(dht_poll) + " s", false, "<= 100 ms");
    summary_row("propagation", "notice, push, p99, " + nodes_text, percentile(p.notice_last, 0.99), percentile(d.notice_last, 0.99), "ms",
                "DHT only, poll " + std::to_string(dht_poll) + " s", false, "<= 500 ms");
    summary_row("propagation", "new version, push, p50, " + nodes_text, percentile(p.update_last, 0.5), percentile(d.update_last, 0.5),
                "ms", "DHT only, poll " + std::to_string(dht_poll) + " s", false, "<= 100 ms");
    summary_row("propagation", "new version, push, p99, " + nodes_text, percentile(p.update_last, 0.99), percentile(d.update_last, 0.99),
                "ms", "DHT only, poll " + std::to_string(dht_poll) + " s", false, "<= 500 ms");
    summary_row("propagation", "notice, push, peers from DHT, p50", percentile(q.notice_last, 0.5), percentile(d.notice_last, 0.5), "ms",
                "DHT only, poll " + std::to_string(dht_poll) + " s", false, "<= 100 ms");
    summary_row("propagation", "new version, push, peers from DHT, p50", percentile(q.update_last, 0.5), percentile(d.update_last, 0.5),
                "ms", "DHT only, poll " + std::to_string(dht_poll) + " s", false, "<= 100 ms");
    fs::create_directories("bench/results");
    std::ofstream("bench/results/propagation.jsonl", std::ios::app)
        << json{{"workload", "propagation"}, {"nodes", nodes}, {"notice_push_p50_ms", percentile(p.notice_last, 0.5)},
                {"notice_push_p99_ms", percentile(p.notice_last, 0.99)}, {"update_push_p50_ms", percentile(p.update_last, 0.5)},
                {"update_push_p99_ms", percentile(p.update_last, 0.99)}, {"notice_dht_p50_ms", percentile(d.notice_last, 0.5)},
                {"update_dht_p50_ms", percentile(d.update_last, 0.5)}, {"dht_poll_s", dht_poll},
                {"notice_push_dht_peers_p50_ms", percentile(q.notice_last, 0.5)}, {"update_push_dht_peers_p50_ms", percentile(q.update_last, 0.5)}}.dump()
        << "\n";
    return p.missed == 0 && q.missed == 0 ? 0 : 1;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "bench_propagation: %s\n", e.what());
    return 1;
  }
}
