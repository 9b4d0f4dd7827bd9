// Tests for outlast::net: the libtorrent session on loopback and HTTP over Unix sockets.
#include <signal.h>
#include <sys/stat.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/read_resume_data.hpp>
#include <libtorrent/settings_pack.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/torrent_info.hpp>
#include <libtorrent/write_resume_data.hpp>
#include <array>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "net/gateway.hpp"
#include "net/local_http.hpp"
#include "net/detail/small_files.hpp"
#include "net/detail/torrent_checks.hpp"
#include "net/session.hpp"
#include "net/torrents.hpp"
#include "tests/support/http.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace outlast;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

net::session_config loopback_config() {
  net::session_config c;
  c.listen = {"127.0.0.1:0"};
  c.bootstrap = {};
  c.upnp = c.natpmp = c.lsd = false;
  c.local_swarm = true;
  return c;
}

auto quiet = [](std::string const&, std::string const&) {};

// A version of two files (an index page with `heading`, 100 kB of text) in `root`/site, hashed.
std::optional<net::built_torrent> two_file_site(fs::path const& root, std::string const& heading) {
  fs::create_directories(root / "site");
  std::ofstream(root / "site" / "index.html") << "<h1>" << heading << "</h1>\n";
  std::ofstream(root / "site" / "b.txt") << std::string(100000, 'b');
  auto built = net::make_torrent(root, "site", nullptr, nullptr);
  REQUIRE(built);
  return *built;
}

// Two sessions on loopback, push off: `seed` seeds `built` from `seed_dir`, `fetcher` knows the
// seed as a static peer (and logs through `fetcher_log`) and has not been given the version.
struct seed_and_fetcher {
  std::unique_ptr<net::session> seed, fetcher;
};

// Has `fetcher` report to `ev` and fetch `built` into `save_path` once it listens, at most
// `download_limit` bytes/s (0: no limit).
void fetch(boost::asio::io_context& ioc, net::session& fetcher, net::session_events ev, net::built_torrent const& built,
           fs::path const& save_path, int download_limit = 0) {
  fetcher.set_events(std::move(ev));
  REQUIRE(test::run_until(ioc, [&] { return !fetcher.stats().listen.empty(); }, 10s));
  net::version_spec spec;
  spec.ih2 = built.ih2;
  spec.save_path = save_path;
  spec.download_limit = download_limit;
  REQUIRE(fetcher.add_version(spec));
}

// What `s` reports of version `ih2` (all zero before it has it).
net::torrent_state version_state(net::session const& s, net::info_hash2 const& ih2) {
  auto all = s.version_states();
  auto it = all.find(ih2);
  return it == all.end() ? net::torrent_state{} : it->second;
}
seed_and_fetcher start_seed_and_fetcher(boost::asio::io_context& ioc, net::built_torrent const& built, fs::path const& seed_dir,
                                        net::session::log_fn fetcher_log) {
  seed_and_fetcher out;
  auto cfg_a = loopback_config();
  cfg_a.push = false;
  auto a = net::session::start(ioc, cfg_a, std::nullopt, quiet);
  REQUIRE(a);
  out.seed = std::move(*a);
  REQUIRE(test::run_until(ioc, [&] { return !out.seed->stats().listen.empty(); }, 10s));
  net::version_spec seed;
  seed.ih2 = built.ih2;
  seed.save_path = seed_dir;
  seed.torrent = built.torrent;
  seed.seed = true;
  REQUIRE(out.seed->add_version(seed));
  auto cfg_b = loopback_config();
  cfg_b.push = false;
  cfg_b.peers = {out.seed->stats().listen.front()};
  auto b = net::session::start(ioc, cfg_b, std::nullopt, std::move(fetcher_log));
  REQUIRE(b);
  out.fetcher = std::move(*b);
  return out;
}

// A stock libtorrent session listening on `listen` that seeds `built` from `seed_dir`; LSD, UPnP
// and NAT-PMP off. With `dht_hub` its DHT starts from that node and the torrent stays out of the
// DHT (a test announces it by hand); without, it has no DHT. It keeps the connections an Outlast
// seed keeps: a fetch with metadata stays in upload mode until it is checked and would look
// redundant to it (net/detail/fetch_gate.hpp).
std::unique_ptr<lt::session> stock_seed(net::built_torrent const& built, fs::path const& seed_dir, std::string const& listen,
                                        std::string const& dht_hub = {}) {
  lt::settings_pack sp;
  sp.set_str(lt::settings_pack::listen_interfaces, listen);
  sp.set_bool(lt::settings_pack::enable_dht, !dht_hub.empty());
  if (!dht_hub.empty()) {
    sp.set_str(lt::settings_pack::dht_bootstrap_nodes, dht_hub);
    sp.set_bool(lt::settings_pack::dht_restrict_routing_ips, false);
    sp.set_bool(lt::settings_pack::dht_restrict_search_ips, false);
  }
  sp.set_bool(lt::settings_pack::enable_lsd, false);
  sp.set_bool(lt::settings_pack::enable_upnp, false);
  sp.set_bool(lt::settings_pack::enable_natpmp, false);
  sp.set_bool(lt::settings_pack::allow_multiple_connections_per_ip, true);
  sp.set_bool(lt::settings_pack::close_redundant_connections, false);
  auto seed = std::make_unique<lt::session>(std::move(sp));
  lt::add_torrent_params atp;
  atp.ti = std::make_shared<lt::torrent_info>(built.torrent, lt::from_span);
  atp.save_path = seed_dir.string();
  atp.flags |= lt::torrent_flags::seed_mode;
  if (!dht_hub.empty()) atp.flags |= lt::torrent_flags::disable_dht;
  seed->add_torrent(std::move(atp));
  return seed;
}

}  // namespace

TEST_CASE("endpoints are validated with messages that name the entry", "[unit][net]") {
  CHECK(net::validate_endpoint("127.0.0.1:6881", true));
  CHECK(net::validate_endpoint("[::1]:0", true));
  CHECK(net::validate_endpoint("router.example.org:6881", false));
  auto host = net::validate_endpoint("localhost:6881", true);
  REQUIRE_FALSE(host);
  CHECK(host.err().message.find("IP literal") != std::string::npos);
  CHECK_FALSE(net::validate_endpoint("127.0.0.1", true));
  CHECK_FALSE(net::validate_endpoint("127.0.0.1:70000", true));
  CHECK_FALSE(net::validate_endpoint("127.0.0.1:http", true));
  CHECK_FALSE(net::validate_endpoint("[::1:80", true));
  CHECK_FALSE(net::validate_endpoint("peer.example:0", false));
}

TEST_CASE("control HTTP over a Unix socket: 0600, round trip, errors", "[net][http]") {
  test::temp_dir dir;
  auto sock = dir / "control.sock";
  { std::ofstream stale(sock); }  // a stale file from a killed node is replaced
  boost::asio::io_context ioc;
  auto server = net::local_http_server::start(ioc, sock, [&ioc](net::http_request const& r, net::local_http_server::responder respond) {
    if (r.target == "/echo") return respond({200, "application/json", "{\"got\":\"" + r.method + " " + r.body + "\"}"});
    if (r.target == "/later")  // answered after the handler returned, as long jobs do
      return boost::asio::post(ioc, [respond] { respond({200, "application/json", "{\"later\":true}"}); });
    respond({404, "application/json", "{}"});
  });
  REQUIRE(server);
  struct stat st{};
  REQUIRE(::stat(sock.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);

  std::thread runner([&] { ioc.run_for(20s); });
  auto r = net::local_http_call(sock, {"POST", "/echo", "hi"});
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "{\"got\":\"POST hi\"}");
  auto later = net::local_http_call(sock, {"GET", "/later", ""});
  REQUIRE(later);
  CHECK(later->body == "{\"later\":true}");
  auto missing = net::local_http_call(sock, {"GET", "/nope", ""});
  REQUIRE(missing);
  CHECK(missing->status == 404);
  auto big = net::local_http_call(sock, {"POST", "/echo", std::string(net::local_http_server::max_body + 1, 'x')});
  CHECK((!big || big->status >= 400));  // refused, not served
  auto after = net::local_http_call(sock, {"POST", "/echo", "still"});  // and the server is still there
  REQUIRE(after);
  CHECK(after->status == 200);
  boost::asio::post(ioc, [&] { (*server)->stop(); ioc.stop(); });
  runner.join();
  CHECK_FALSE(std::filesystem::exists(sock));

  auto none = net::local_http_call(sock, {"GET", "/echo", ""});
  REQUIRE_FALSE(none);
  CHECK(none.err().code == errc::unavailable);
}

TEST_CASE("session: two nodes on loopback find each other through the DHT", "[swarm][net]") {
  boost::asio::io_context ioc;
  auto a = net::session::start(ioc, loopback_config(), std::nullopt, quiet);
  REQUIRE(a);
  REQUIRE(test::run_until(ioc, [&] { return !(*a)->stats().listen.empty() && (*a)->stats().dht_running; }, 10s));
  auto a_listen = (*a)->stats().listen.front();
  CHECK(a_listen.rfind("127.0.0.1:", 0) == 0);
  CHECK(a_listen != "127.0.0.1:0");

  auto cfg_b = loopback_config();
  cfg_b.bootstrap = {a_listen};
  auto b = net::session::start(ioc, cfg_b, std::nullopt, quiet);
  REQUIRE(b);
  REQUIRE(test::run_until(ioc, [&] { return (*a)->stats().dht_nodes >= 1 && (*b)->stats().dht_nodes >= 1; }, 20s));
}

TEST_CASE("session: the DHT identity survives a restart through saved state", "[swarm][net]") {
  boost::asio::io_context ioc;
  std::string state, id;
  {
    auto a = net::session::start(ioc, loopback_config(), std::nullopt, quiet);
    REQUIRE(a);
    REQUIRE(test::run_until(ioc, [&] { return !(*a)->dht_node_id().empty(); }, 10s));
    id = (*a)->dht_node_id();
    state = (*a)->save_state();
    (*a)->stop();
  }
  REQUIRE_FALSE(state.empty());
  auto again = net::session::start(ioc, loopback_config(), state, quiet);
  REQUIRE(again);
  REQUIRE(test::run_until(ioc, [&] { return !(*again)->dht_node_id().empty(); }, 10s));
  CHECK((*again)->dht_node_id() == id);

  SECTION("a damaged state is ignored, not fatal") {
    std::vector<std::string> logged;
    auto fresh = net::session::start(ioc, loopback_config(), std::string("d3:dhtl"), [&](std::string const& lvl, std::string const& m) {
      logged.push_back(lvl + ": " + m);
    });
    REQUIRE(fresh);
    REQUIRE(test::run_until(ioc, [&] { return !(*fresh)->dht_node_id().empty(); }, 10s));
    CHECK((*fresh)->dht_node_id() != id);
  }
}

TEST_CASE("session: a bad listen address is refused before anything starts", "[unit][net]") {
  boost::asio::io_context ioc;
  auto cfg = loopback_config();
  cfg.listen = {"lo:6881"};
  auto s = net::session::start(ioc, cfg, std::nullopt, quiet);
  REQUIRE_FALSE(s);
  CHECK(s.err().code == errc::invalid_argument);
}

TEST_CASE("session: a fetch keeps its connection to the seed through the metadata check", "[swarm][net]") {
  // In upload mode with metadata a fetch is "upload-only"; without net/detail/fetch_gate.hpp the
  // seed and the fetch closed their connection as redundant when the metadata arrived, and the
  // fetch waited for libtorrent to try again.
  ::setenv("OUTLAST_DEBUG_SWARM", "1", 1);  // disconnect reasons in the log
  test::temp_dir dir;
  auto built = two_file_site(dir / "seed", "hello");

  boost::asio::io_context ioc;
  std::vector<std::string> lines;  // the fetching side's
  auto keep = [&](std::string const& level, std::string const& msg) { lines.push_back(level + " " + msg); };
  auto [a, b] = start_seed_and_fetcher(ioc, *built, dir / "seed", keep);
  bool finished = false;
  std::size_t lines_before_finish = 0;
  net::session_events ev;
  ev.finished = [&](net::info_hash2 const& ih) {
    if (finished || ih != built->ih2) return;
    finished = true;
    lines_before_finish = lines.size();
  };
  fetch(ioc, *b, ev, *built, dir / "fetch");
  bool ok = test::run_until(ioc, [&] { return finished; }, 20s);
  ::unsetenv("OUTLAST_DEBUG_SWARM");
  REQUIRE(test::run_until(ioc, [&] {
    for (auto const& l : lines)
      if (l.find("disconnecting") != std::string::npos) return true;  // the closing once complete
    return false;
  }, 10s));
  std::string before;  // until the fetch completed; after it, the two seeds rightly part
  for (std::size_t i = 0; i < lines_before_finish; ++i) before += lines[i] + "\n";
  INFO(before);
  REQUIRE(ok);
  CHECK(before.find("upload to upload connection") == std::string::npos);
  CHECK(before.find("uninteresting upload-only peer") == std::string::npos);
}

TEST_CASE("session: a fetch whose only seed went away dials it again within seconds when it is back", "[swarm][net]") {
  // libtorrent dials an address it was connected to only min_reconnect_time (60 s) after, times
  // its failures: a fetch whose only seed restarted waited a minute or more for it. The seed
  // that comes back here does not know the fetch and has no DHT: only the fetch can reconnect.
  // Seen in swarm_test under load, where the restarted seed did not dial the mirror back.
  ::setenv("OUTLAST_DEBUG_SWARM", "1", 1);  // connections in the log
  test::temp_dir dir;
  fs::create_directories(dir / "seed" / "site");
  std::ofstream(dir / "seed" / "site" / "index.html") << "<h1>back</h1>\n";
  std::ofstream(dir / "seed" / "site" / "big.bin") << std::string(4 << 20, 'x');
  auto built = net::make_torrent(dir / "seed", "site", nullptr, nullptr);
  REQUIRE(built);

  boost::asio::io_context ioc;
  std::mutex lines_mutex;
  std::vector<std::string> lines;
  auto keep = [&](std::string const& level, std::string const& msg) {
    std::lock_guard lock(lines_mutex);
    lines.push_back(level + " " + msg);
  };
  auto [a, b] = start_seed_and_fetcher(ioc, *built, dir / "seed", keep);
  auto seed_port = std::stoi(a->stats().listen.front().substr(a->stats().listen.front().rfind(':') + 1));
  fetch(ioc, *b, {}, *built, dir / "fetch", 100 * 1000);  // about 40 s for the site: the seed goes mid-fetch
  auto state = [&] { return version_state(*b, built->ih2); };
  REQUIRE(test::run_until(ioc, [&] { return state().payload_down > 0; }, 20s));
  a->stop();
  a.reset();
  auto dump = [&] {
    std::lock_guard lock(lines_mutex);
    std::string out;
    for (auto const& l : lines) out += l + "\n";
    return out;
  };
  // Its connection gone: from here on libtorrent alone would not dial the seed's address again
  // for a minute or more (it was connected moments ago).
  if (!test::run_until(ioc, [&] { return state().peers == 0; }, 20s)) FAIL("still connected:\n" << dump());
  b->set_rate_limits(built->ih2, 0, 0);

  auto seed = stock_seed(*built, dir / "seed", "127.0.0.1:" + std::to_string(seed_port));
  REQUIRE(test::run_until(ioc, [&] { return seed->listen_port() == seed_port; }, 10s));
  auto back = std::chrono::steady_clock::now();
  bool complete = test::run_until(ioc, [&] {
    std::vector<lt::alert*> ignored;
    seed->pop_alerts(&ignored);
    return state().complete;
  }, 30s);
  auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - back).count();
  ::unsetenv("OUTLAST_DEBUG_SWARM");
  INFO(dump());
  INFO("complete " << took << " s after the seed came back");
  REQUIRE(complete);
  CHECK(took < 20);
}

TEST_CASE("session: fetches whose only peers are each other ask the DHT again, and find a seed that came after them",
          "[swarm][net]") {
  // Two fetches find each other in the DHT and nothing else: no metadata, no seed. The seed is a
  // plain libtorrent session that announces itself by hand and looks for nobody (libtorrent's
  // DHT off for its torrent), and only after both fetches have asked the DHT again once (past
  // libtorrent's own early re-announce): only their next lookup can bring them to it. A fetch
  // with any peer used not to ask again, and waited for libtorrent's 15-minute announce (seen
  // when a new version's pointer came by push before its seed's announce reached the DHT).
  test::temp_dir dir;
  auto built = two_file_site(dir / "seed", "late seed");

  boost::asio::io_context ioc;
  auto hub = net::session::start(ioc, loopback_config(), std::nullopt, quiet);  // the DHT's first node
  REQUIRE(hub);
  REQUIRE(test::run_until(ioc, [&] { return !(*hub)->stats().listen.empty() && (*hub)->stats().dht_running; }, 10s));
  auto hub_listen = (*hub)->stats().listen.front();
  std::vector<std::unique_ptr<net::session>> fetches;
  std::array<int, 2> asked_again{};
  for (int i = 0; i < 2; ++i) {
    auto cfg = loopback_config();
    cfg.bootstrap = {hub_listen};
    cfg.push = false;
    auto f = net::session::start(ioc, cfg, std::nullopt, [&asked_again, i](std::string const&, std::string const& m) {
      if (m.find("asking the DHT again") != std::string::npos) ++asked_again[static_cast<std::size_t>(i)];
    });
    REQUIRE(f);
    REQUIRE(test::run_until(ioc, [&] { return (*f)->stats().dht_nodes >= 1; }, 20s));
    fetch(ioc, **f, {}, *built, dir / ("fetch" + std::to_string(i)));
    fetches.push_back(std::move(*f));
  }
  auto state = [&](net::session const& f) { return version_state(f, built->ih2); };
  REQUIRE(test::run_until(ioc, [&] { return state(*fetches[0]).peers >= 1 && state(*fetches[1]).peers >= 1; }, 20s));
  REQUIRE(test::run_until(ioc, [&] { return asked_again[0] >= 1 && asked_again[1] >= 1; }, 20s));
  CHECK_FALSE(state(*fetches[0]).has_metadata);
  CHECK(state(*fetches[0]).peers >= 1);  // stuck with a peer, not alone

  auto seed = stock_seed(*built, dir / "seed", "127.0.0.1:0", hub_listen);
  lt::sha1_hash dht_key(reinterpret_cast<char const*>(built->ih2.data()));
  auto next_announce = std::chrono::steady_clock::now();
  bool both = test::run_until(ioc, [&] {
    if (std::chrono::steady_clock::now() >= next_announce && seed->is_dht_running() && seed->listen_port() > 0) {
      seed->dht_announce(dht_key, seed->listen_port());
      next_announce = std::chrono::steady_clock::now() + 1s;
    }
    std::vector<lt::alert*> ignored;
    seed->pop_alerts(&ignored);
    return state(*fetches[0]).complete && state(*fetches[1]).complete;
  }, 40s);
  INFO("asked again " << asked_again[0] << " / " << asked_again[1] << "; peers " << state(*fetches[0]).peers << " / "
                      << state(*fetches[1]).peers << "; metadata " << state(*fetches[0]).has_metadata << " / "
                      << state(*fetches[1]).has_metadata);
  CHECK(both);
}

TEST_CASE("torrent_from_resume: a finished fetch's resume data gives back the publisher's .torrent; bad resume data is refused",
          "[swarm][net]") {
  test::temp_dir dir;
  fs::create_directories(dir / "seed" / "site");
  std::ofstream(dir / "seed" / "site" / "index.html") << "<h1>hello</h1>\n";
  {
    std::ofstream big(dir / "seed" / "site" / "big.bin", std::ios::binary);  // 3.5 pieces: a piece layer
    for (int i = 0; i < (7 << 19) / 64; ++i) big << std::string(63, static_cast<char>('a' + i % 26)) << '\n';
  }
  auto built = net::make_torrent(dir / "seed", "site", nullptr, nullptr);
  REQUIRE(built);

  boost::asio::io_context ioc;
  auto [a, b] = start_seed_and_fetcher(ioc, *built, dir / "seed", quiet);
  bool finished = false;
  std::string resume;  // the first resume data after the version finished
  net::session_events ev;
  ev.finished = [&](net::info_hash2 const& ih) { finished = finished || ih == built->ih2; };
  ev.resume_data = [&](net::info_hash2 const& ih, std::string const& blob) {
    if (finished && ih == built->ih2 && resume.empty()) resume = blob;
  };
  fetch(ioc, *b, ev, *built, dir / "fetch");
  REQUIRE(test::run_until(ioc, [&] { return !resume.empty(); }, 20s));

  auto layers = [](std::string const& torrent) {
    lt::torrent_info ti(torrent, lt::from_span);
    std::map<std::string, std::string> out;
    for (auto f : ti.files().file_range())
      if (!ti.files().pad_file_at(f)) out[ti.files().file_path(f)] = std::string(ti.piece_layer(f).begin(), ti.piece_layer(f).end());
    return std::make_pair(ti.info_hashes().v2, out);
  };
  auto rebuilt = net::torrent_from_resume(resume, built->ih2);
  REQUIRE(rebuilt);
  auto mine = layers(*rebuilt), theirs = layers(built->torrent);
  CHECK(mine.first == theirs.first);
  CHECK(mine.second == theirs.second);
  CHECK(mine.second["site/big.bin"].size() == 4 * 32);

  // Another version's resume data, garbage, and hashes lost or changed are refused.
  auto other = built->ih2;
  other[0] ^= 1;
  CHECK(net::torrent_from_resume(resume, other).err().code == errc::corrupt);
  CHECK(net::torrent_from_resume("d4:infoi3ee", built->ih2).err().code == errc::corrupt);
  lt::error_code ec;
  auto atp = lt::read_resume_data(resume, ec);
  REQUIRE(!ec);
  auto big = lt::file_index_t(0);
  for (auto f : atp.ti->files().file_range())
    if (atp.ti->files().file_path(f) == "site/big.bin") big = f;
  REQUIRE(!atp.merkle_trees[big].empty());
  auto changed = atp;
  changed.merkle_trees[big].back()[0] ^= 1;  // a hash the layer depends on, or the root of a leaf group
  auto bad = net::torrent_from_resume([&] {
    auto buf = lt::write_resume_data_buf(changed);
    return std::string(buf.begin(), buf.end());
  }(), built->ih2);
  REQUIRE(!bad);
  CHECK(bad.err().code == errc::corrupt);
  auto lost = atp;
  lost.merkle_trees[big].clear();
  lost.merkle_tree_mask[big].clear();
  auto none = net::torrent_from_resume([&] {
    auto buf = lt::write_resume_data_buf(lost);
    return std::string(buf.begin(), buf.end());
  }(), built->ih2);
  REQUIRE(!none);
  CHECK(none.err().message.find("lacks the hashes of site/big.bin") != std::string::npos);

  // The next version changes index.html and moves big.bin: big.bin is placed, and starts as had,
  // with the piece layer this resume data holds for it; index.html must come from peers.
  auto old_ti = std::make_shared<lt::torrent_info>(built->torrent, lt::from_span);
  fs::create_directories(dir / "v2" / "site" / "data");
  std::ofstream(dir / "v2" / "site" / "index.html") << "<h1>hello again</h1>\n";
  fs::copy_file(dir / "seed" / "site" / "big.bin", dir / "v2" / "site" / "data" / "big.bin");
  auto next = net::make_torrent(dir / "v2", "site", nullptr, nullptr);
  REQUIRE(next);
  lt::torrent_info next_ti(next->torrent, lt::from_span);
  lt::torrent_info metadata_only(net::detail::torrent_bytes(next_ti), lt::from_span);  // what a peer's metadata gives
  auto placed = net::detail::place_unchanged(*old_ti, dir / "fetch", metadata_only, dir / "follower");
  CHECK(placed.bytes == 7 << 19);
  REQUIRE(placed.files.size() == 1);
  auto const& nf = next_ti.files();
  CHECK(nf.file_path(placed.files[0].first) == "site/data/big.bin");
  CHECK(old_ti->files().file_path(placed.files[0].second) == "site/big.bin");
  auto start = net::detail::start_from_placed(atp, metadata_only, placed);
  REQUIRE(start);
  CHECK(start->ti->info_hashes().v2 == next_ti.info_hashes().v2);
  auto big2 = placed.files[0].first;
  CHECK(metadata_only.piece_layer(big2).empty());
  CHECK(std::string(start->ti->piece_layer(big2).begin(), start->ti->piece_layer(big2).end()) ==
        std::string(next_ti.piece_layer(big2).begin(), next_ti.piece_layer(big2).end()));
  int had = 0;
  for (auto p : next_ti.piece_range()) {
    bool in_big = p >= nf.piece_index_at_file(big2) && p < nf.piece_index_at_file(big2) + lt::piece_index_t::diff_type(4);
    CHECK(start->have.get_bit(p) == in_big);
    had += start->have.get_bit(p);
  }
  CHECK(had == 4);
  // Resume data that lost big.bin's hashes, or a version cut in other pieces: the files are
  // checked instead (the caller's fallback), never taken on trust without their layer.
  auto no_layer = net::detail::start_from_placed(lost, metadata_only, placed);
  REQUIRE(!no_layer);
  CHECK(no_layer.err().message.find("lacks the hashes of site/big.bin") != std::string::npos);
  lt::file_storage coarse_files;
  lt::add_files(coarse_files, (dir / "v2" / "site").string());
  lt::create_torrent coarse(coarse_files, 2 << 20, lt::create_torrent::v2_only);
  lt::set_piece_hashes(coarse, (dir / "v2").string());
  std::vector<char> coarse_bytes;
  lt::bencode(std::back_inserter(coarse_bytes), coarse.generate());
  lt::torrent_info coarse_ti(coarse_bytes, lt::from_span);
  CHECK(net::detail::start_from_placed(atp, coarse_ti, placed).err().code == errc::invalid_argument);
}

TEST_CASE("small files: the message codec refuses what is malformed, and only the published bytes match a file's root",
          "[unit][net][small]") {
  using net::detail::decode_small_message;
  using net::detail::encode_small_message;
  using net::detail::small_message;
  auto q = decode_small_message(encode_small_message({true, 7, std::nullopt}));
  REQUIRE(q);
  CHECK(q->request);
  CHECK(q->index == 7);
  auto a = decode_small_message(encode_small_message({false, 3, std::string("abc")}));
  REQUIRE(a);
  CHECK_FALSE(a->request);
  CHECK(a->data == std::string("abc"));
  CHECK(a->offset == 0);
  auto later = decode_small_message(encode_small_message({false, 3, std::string("def"), 262144}));
  REQUIRE(later);
  CHECK(later->data == std::string("def"));
  CHECK(later->offset == 262144);
  CHECK(net::detail::encode_small_answer(3, "def", 262144) == "d1:d3:def1:fi3e1:oi262144ee");
  auto none = decode_small_message(encode_small_message({false, 3, std::nullopt}));
  REQUIRE(none);
  CHECK_FALSE(none->data);
  for (std::string bad : {"", "de", "li1ee", "d1:qi-1ee", "d1:qi1e1:fi1ee", "d1:qi1e1:d1:xe", "d1:fi1e1:di5ee", "d1:q3:abce",
                          "d1:qi99999999999ee", "d1:fi1e1:d5:abe",
                          "d1:fi1e1:oi5ee",                 // an offset without data
                          "d1:d1:x1:fi1e1:oi-1ee",          // a negative offset
                          "d1:d1:x1:fi1e1:o1:xe",           // an offset that is not a number
                          "d1:d1:x1:fi1e1:oi1048576ee"})    // past the largest file sent whole
    CHECK_FALSE(decode_small_message(bad));
  std::string big = "d1:fi1e1:d" + std::to_string(net::detail::small_chunk + 1) + ":" +
                    std::string(static_cast<std::size_t>(net::detail::small_chunk + 1), 'x') + "e";
  CHECK_FALSE(decode_small_message(big));  // a part over 256 KiB

  // A torrent of a 20,000-byte page (two blocks, the last partial) and a 1 MiB + 1 file.
  test::temp_dir dir;
  std::string page(20000, '\0');
  for (std::size_t i = 0; i < page.size(); ++i) page[i] = static_cast<char>(i * 7 + 3);
  fs::create_directories(dir / "site");
  std::ofstream(dir / "site" / "page.html", std::ios::binary) << page;
  std::ofstream(dir / "site" / "big.bin", std::ios::binary) << std::string((1 << 20) + 1, 'b');
  std::string piece(1 << 20, '\0');  // exactly one piece: 64 blocks
  for (std::size_t i = 0; i < piece.size(); ++i) piece[i] = static_cast<char>(i / 4093);
  std::ofstream(dir / "site" / "piece.bin", std::ios::binary) << piece;
  auto built = net::make_torrent(dir.path(), "site", nullptr);
  REQUIRE(built);
  lt::error_code ec;
  lt::torrent_info ti(built->torrent, ec, lt::from_span);
  REQUIRE_FALSE(ec);
  std::optional<lt::file_index_t> page_index, big_index, piece_index;
  for (auto i : ti.files().file_range()) {
    if (ti.files().file_name(i) == "page.html") page_index = i;
    if (ti.files().file_name(i) == "big.bin") big_index = i;
    if (ti.files().file_name(i) == "piece.bin") piece_index = i;
  }
  REQUIRE(page_index);
  REQUIRE(big_index);
  REQUIRE(piece_index);
  CHECK(net::detail::small_file_matches(ti, *piece_index, piece));
  CHECK_FALSE(net::detail::small_file_matches(ti, *piece_index, piece.substr(0, piece.size() - 1) + "x"));
  CHECK(net::detail::small_file_matches(ti, *page_index, page));
  auto flipped = page;
  flipped[19999] ^= 1;
  CHECK_FALSE(net::detail::small_file_matches(ti, *page_index, flipped));
  CHECK_FALSE(net::detail::small_file_matches(ti, *page_index, page.substr(0, 19999)));
  CHECK_FALSE(net::detail::small_file_matches(ti, *page_index, page + "x"));
  CHECK_FALSE(net::detail::small_file_matches(ti, *big_index, std::string((1 << 20) + 1, 'b')));  // over a piece
  CHECK_FALSE(net::detail::small_file_matches(ti, lt::file_index_t{99}, page));

  // A first fetch (no previous version) starts with the files that came whole as had; a file
  // over a piece cannot be placed without the previous version's piece layer.
  net::detail::placement placed;
  placed.files.push_back({*page_index, lt::file_index_t{-1}});
  placed.files.push_back({*piece_index, lt::file_index_t{-1}});
  auto start = net::detail::start_from_placed({}, ti, placed);
  REQUIRE(start);
  CHECK(start->have.count() == 2);
  CHECK(start->have[ti.files().piece_index_at_file(*page_index)]);
  CHECK(start->have[ti.files().piece_index_at_file(*piece_index)]);
  CHECK_FALSE(start->have[ti.files().piece_index_at_file(*big_index)]);
  placed.files.push_back({*big_index, lt::file_index_t{-1}});
  CHECK(net::detail::start_from_placed({}, ti, placed).err().code == errc::corrupt);

  REQUIRE(net::detail::write_small_file(dir / "out" / "deep" / "page.html", page));
  std::ifstream in(dir / "out" / "deep" / "page.html", std::ios::binary);
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == page);
}

TEST_CASE("gateway: a small file outruns a slow reader's socket and still arrives whole", "[unit][net][gateway]") {
  // A cached small file goes out by sendfile; when the socket cannot take it all (here a 4 KB
  // send buffer and a 4 KB receive buffer against 64 KiB), the rest is written from the cached
  // bytes as the reader drains them, and the connection then serves its next request.
  test::temp_dir dir;
  std::string body(64 * 1024, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 7 + i / 251);
  test::write_file(dir / "v" / "tail.bin", body);
  test::write_file(dir / "v" / "a.txt", "a\n");
  auto view = std::make_shared<net::gateway_view>();
  auto& site = view->sites["k/s"];
  site.root = dir / "v";
  site.version = 1;
  site.files["tail.bin"] = {static_cast<std::int64_t>(body.size()), "\"tail\"", 0};
  site.files["a.txt"] = {2, "\"a\"", 1};
  net::gateway_config cfg;
  cfg.listen = "127.0.0.1:0";
  cfg.send_buffer = 4096;
  auto gw = net::gateway::start(cfg, [](std::string const&, std::string const&) {});
  REQUIRE(gw);
  (*gw)->publish(view);
  auto port = std::stoi((*gw)->endpoint().substr((*gw)->endpoint().rfind(':') + 1));
  std::string host = "s.k.localhost:" + std::to_string(port);

  test::kept_alive slow(port, 4096);
  for (int round = 0; round < 3; ++round) {  // the first fills the cache, the others go by sendfile
    INFO(round);
    slow.send(host, "/tail.bin");
    REQUIRE(test::wait_until([&] { return slow.queued() > 0; }, 10s));
    auto answer = slow.receive();
    CHECK(answer.status == 200);
    CHECK(answer.header("etag") == "\"tail\"");
    CHECK(answer.body.size() == body.size());
    CHECK(answer.body == body);
  }
  auto next = slow.get(host, "/a.txt");
  CHECK(next.status == 200);
  CHECK(next.body == "a\n");
  // An answer is counted when its write completes, which the reader can outrun.
  test::wait_until([&] { return (*gw)->counters().requests_by_status[200] == 4; }, 10s);
  CHECK((*gw)->counters().requests_by_status[200] == 4);

  // sendfile has no MSG_NOSIGNAL: a second sendfile after a reader hung up mid-answer raises
  // SIGPIPE, which ended the node once in a bench run before the gateway ignored the signal. The
  // race is too narrow to hit on demand, so the disposition is checked; then readers that hang
  // up (RST) on 20 pipelined requests each, and the gateway still serves.
  struct sigaction pipe_action {};
  ::sigaction(SIGPIPE, nullptr, &pipe_action);
  CHECK(pipe_action.sa_handler == SIG_IGN);
  std::string pipelined;
  for (int i = 0; i < 20; ++i) pipelined += "GET /tail.bin HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
  boost::asio::io_context ioc;
  for (int i = 0; i < 50; ++i) {
    boost::asio::ip::tcp::socket s(ioc);
    s.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
    s.set_option(boost::asio::socket_base::linger(true, 0));  // close() sends RST
    boost::asio::write(s, boost::asio::buffer(pipelined));
    s.close();
  }
  CHECK(slow.get(host, "/a.txt").body == "a\n");  // still serving
}
