// Push tests: signed records travelling over peer connections (net/push.hpp). Every node here
// runs without a DHT and with a 10-minute polling interval, so whatever arrives within seconds
// arrived by push.
#include <catch2/catch.hpp>
#include <libtorrent/torrent_info.hpp>
#include <fstream>
#include <optional>
#include <random>

#include "crypto/base32.hpp"
#include "crypto/key_file.hpp"
#include "crypto/records.hpp"
#include "net/local_http.hpp"
#include "net/push.hpp"
#include "net/torrents.hpp"
#include "tests/support/bt_peer.hpp"
#include "tests/support/swarm.hpp"
#include "tests/support/wait.hpp"

using namespace outlast;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

void make_site(fs::path const& dir, std::string const& front = "News") {
  fs::create_directories(dir / "articles");
  std::ofstream(dir / "index.html") << "<!doctype html><title>" << front << "</title><h1>" << front << "</h1>\n";
  std::mt19937 rng(7);
  std::string data(256 * 1024, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  std::ofstream(dir / "articles" / "a.bin", std::ios::binary) << data;
}

json records(test::swarm_node const& n, std::string const& key) {
  auto r = net::local_http_call(n.home() / "control.sock", {"GET", "/v1/records?key=" + key, ""});
  REQUIRE(r);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

json record(test::swarm_node const& n, std::string const& key, std::string const& salt) {
  for (auto const& r : records(n, key))
    if (r["salt"] == salt) return r;
  return nullptr;
}

bool has_notice(test::swarm_node const& n, std::string const& text) {
  for (auto const& x : n.cli_json({"notices"}))
    if (x["text"] == text) return true;
  return false;
}

json node_status(test::swarm_node const& n) { return n.cli_json({"status"}); }

bool complete(test::swarm_node const& n, std::string const& address, std::int64_t version) {
  auto s = n.site(address);
  return !s.is_null() && s["version"].get<std::int64_t>() >= version && s["complete"].get<bool>();
}

crypto::signed_item item_of(json const& rec) {
  auto raw = crypto::from_hex(rec["item"].get<std::string>());
  REQUIRE(raw);
  auto item = crypto::decode_item(std::string(raw->begin(), raw->end()));
  REQUIRE(item);
  return *item;
}

std::array<std::uint8_t, 32> ih2_of(json const& published) {
  auto raw = crypto::from_hex(published["infohash"].get<std::string>());
  REQUIRE(raw);
  REQUIRE(raw->size() == 32);
  std::array<std::uint8_t, 32> out{};
  std::copy(raw->begin(), raw->end(), out.begin());
  return out;
}

// The publisher's beacon torrent (net::make_beacon): the one swarm whose connections speak push.
std::array<std::uint8_t, 32> beacon_ih2(std::string const& key) {
  test::temp_dir dir;
  auto built = net::make_beacon(dir.path(), key);
  REQUIRE(built);
  return built->ih2;
}

// A publisher and followers in a line, each follower knowing only the node before it as a static
// peer. No DHT: a follower learns the pointer from its neighbour in the publisher's beacon swarm
// (the "have" exchange), fetches the version, and everything after that travels by push too.
struct line {
  test::temp_dir base;
  std::vector<std::unique_ptr<test::swarm_node>> nodes;
  json published;
  std::string address, key;

  explicit line(int n) {
    make_site(base / "site");
    for (int i = 0; i < n; ++i) nodes.push_back(std::make_unique<test::swarm_node>(std::string(1, char('a' + i)), base.path()));
    nodes[0]->start({});
    published = nodes[0]->cli_json({"publish", (base / "site").string(), "--site", "news"});
    address = published["address"].get<std::string>();
    key = address.substr(0, address.find('/'));
    for (int i = 1; i < n; ++i) {
      nodes[i]->start({}, {"--peer", nodes[i - 1]->endpoint()});
      REQUIRE(nodes[i]->cli({"follow", address}).code == 0);
    }
    for (int i = 1; i < n; ++i) {
      bool ok = test::wait_until([&] { return complete(*nodes[i], address, 1); }, 60s);
      INFO(nodes[i]->name() << ":\n" << nodes[i]->log());
      REQUIRE(ok);
    }
    // (The pointer usually comes by push from the neighbour, through the publisher's beacon; the
    // DHT may win the race, since connected nodes learn each other's DHT ports. Either is fine.)
    // Every link speaks push (the ends have one link, the others two; more, once the beacon's
    // peers learn of each other by peer exchange).
    for (int i = 0; i < n; ++i) {
      int want = (i == 0 || i == n - 1) ? 1 : 2;
      bool ok = test::wait_until([&] { return node_status(*nodes[i])["push"]["peers"].get<int>() >= want; }, 20s);
      INFO(nodes[i]->name() << " push: " << node_status(*nodes[i])["push"].dump() << "\n" << nodes[i]->log());
      REQUIRE(ok);
    }
  }
  ~line() {
    for (auto& n : nodes) n->stop();
  }
  test::swarm_node& operator[](int i) { return *nodes[static_cast<std::size_t>(i)]; }
};

}  // namespace

TEST_CASE("push messages: encode, decode and bounds", "[unit]") {
  auto kp = crypto::key_pair::generate();
  auto item = *crypto::sign_item(kp, ".notice", 3, "d3:msg2:hie");
  auto decoded = net::decode_push(net::encode_push_record(item));
  REQUIRE(decoded);
  CHECK(decoded->type == net::push_message::kind::record);
  CHECK(decoded->record == item);
  std::vector<net::have_entry> have{{"news", 4}, {".notice", 9}};
  auto h = net::decode_push(net::encode_push_have(have));
  REQUIRE(h);
  CHECK(h->type == net::push_message::kind::have);
  CHECK(h->have == have);
  CHECK(net::decode_push(net::encode_push_have({}))->have.empty());
  for (std::string bad : std::vector<std::string>{"", "de", "i1e", "d1:xi1ee", "d1:hi1ee", "d1:hll4:newsi-1eeee", "d1:hll4:newseee", "d1:r3:abce",
                          "d1:hle1:rdee", std::string("d1:r") + std::string(9000, 'x') + "e"}) {
    INFO(bad.substr(0, 40));
    CHECK_FALSE(net::decode_push(bad));
  }
  std::vector<net::have_entry> many(net::max_push_have + 1, {"s", 1});
  CHECK_FALSE(net::decode_push(net::encode_push_have(many)));
}

TEST_CASE("a notice reaches all of 6 nodes in a chain, each knowing only its neighbour", "[swarm][push]") {
  line l(6);
  auto posted = l[0].cli({"notice", "post", "We are moving: read the mirrors", "--severity", "critical"});
  REQUIRE(posted.code == 0);
  bool all = test::wait_until([&] {
    for (int i = 1; i < 6; ++i)
      if (!has_notice(l[i], "We are moving: read the mirrors")) return false;
    return true;
  }, 10s);
  INFO("f:\n" << l[5].log());
  REQUIRE(all);
  auto at_f = record(l[5], l.key, ".notice");
  CHECK(at_f["via"].get<std::string>().rfind("push from 127.0.0.1:", 0) == 0);
  // Forwarded once per link: nobody sent it back towards the publisher.
  CHECK(node_status(l[0])["refused"]["rollbacks_and_forks"] == 0);
}

TEST_CASE("mirrors that know each other only through the DHT meet on the beacon; a notice and a version arrive by push",
          "[swarm][push]") {
  // No static peers: the DHT is how they find the pointer, the version's seeds and each other.
  // Every node is a seed of the beacon, and libtorrent's own lookups skip seeds, so without the
  // node's own beacon lookups no push connection ever forms here (and the 10-minute poll would
  // be the only way news travels).
  test::temp_dir base;
  make_site(base / "site");
  test::swarm_node a("a", base.path()), b("b", base.path()), c("c", base.path());
  a.start({});
  b.start({a.endpoint()});
  c.start({a.endpoint()});
  auto published = a.cli_json({"publish", (base / "site").string(), "--site", "news"});
  auto address = published["address"].get<std::string>();
  auto key = address.substr(0, address.find('/'));
  for (auto* n : {&b, &c}) REQUIRE(n->cli({"follow", address}).code == 0);
  bool mirrored = test::wait_until([&] { return complete(b, address, 1) && complete(c, address, 1); }, 60s);
  INFO("b:\n" << b.log() << "\nc:\n" << c.log());
  REQUIRE(mirrored);
  // Each mirror connects to the others' beacons: a has two push peers, b and c two each. A node
  // looks its beacon's peers up when it adds it, then after 1, 2, 4 minutes...: when the first
  // lookup comes before another node's announce has reached the DHT (seen under load: a and c
  // had not met after 20 s), they meet at the next, a minute later.
  bool meshed = test::wait_until([&] {
    for (auto* n : {&a, &b, &c})
      if (node_status(*n)["push"]["peers"].get<int>() < 2) return false;
    return true;
  }, 90s);
  INFO("a push: " << node_status(a)["push"].dump() << "\nb push: " << node_status(b)["push"].dump() << "\nc push: "
                  << node_status(c)["push"].dump());
  REQUIRE(meshed);
  REQUIRE(a.cli({"notice", "post", "Found through the DHT", "--severity", "critical"}).code == 0);
  bool noticed = test::wait_until([&] { return has_notice(b, "Found through the DHT") && has_notice(c, "Found through the DHT"); }, 10s);
  REQUIRE(noticed);
  for (auto* n : {&b, &c}) CHECK(record(*n, key, ".notice")["via"].get<std::string>().rfind("push from", 0) == 0);
  std::ofstream(base / "site" / "index.html") << "<!doctype html><title>News</title><h1>Second edition</h1>\n";
  REQUIRE(a.cli_json({"publish", (base / "site").string(), "--site", "news"})["version"] == 2);
  bool updated = test::wait_until([&] { return complete(b, address, 2) && complete(c, address, 2); }, 30s);
  REQUIRE(updated);
  for (auto* n : {&b, &c}) CHECK(record(*n, key, "news")["via"].get<std::string>().rfind("push from", 0) == 0);
  for (auto* n : {&a, &b, &c}) n->stop();
}

TEST_CASE("a new version reaches a connected follower by push, not by polling", "[swarm][push]") {
  line l(2);
  std::ofstream(l.base / "site" / "index.html") << "<!doctype html><title>News</title><h1>Second edition</h1>\n";
  auto v2 = l[0].cli_json({"publish", (l.base / "site").string(), "--site", "news"});
  REQUIRE(v2["version"] == 2);
  bool got = test::wait_until([&] { return complete(l[1], l.address, 2); }, 30s);
  INFO("b:\n" << l[1].log());
  REQUIRE(got);
  auto at_b = record(l[1], l.key, "news");
  CHECK(at_b["seq"] == 2);
  CHECK(at_b["via"].get<std::string>().rfind("push from", 0) == 0);
}

TEST_CASE("a node that was offline gets what it missed within seconds of reconnecting", "[swarm][push]") {
  line l(2);
  l[1].stop();
  REQUIRE(l[0].cli({"notice", "post", "first while you were away"}).code == 0);
  REQUIRE(l[0].cli({"notice", "post", "second while you were away", "--severity", "warning"}).code == 0);
  l[1].start({}, {"--peer", l[0].endpoint()});
  bool got = test::wait_until([&] { return has_notice(l[1], "first while you were away") && has_notice(l[1], "second while you were away"); }, 15s);
  INFO("b:\n" << l[1].log());
  REQUIRE(got);
  CHECK(record(l[1], l.key, ".notice")["via"].get<std::string>().rfind("push from", 0) == 0);
  CHECK(node_status(l[1])["refused"]["rollbacks_and_forks"] == 0);  // history came oldest first
}

TEST_CASE("push rides the beacon connection only; a version's connections close once both ends are seeds", "[swarm][push]") {
  line l(2);
  auto& b = l[1];
  // The version and its beacon were both shared; of the two connections only the beacon's stays.
  bool one = test::wait_until([&] { return node_status(b)["peers"].get<int>() == 1; }, 20s);
  INFO(node_status(b).dump());
  CHECK(one);
  CHECK(node_status(b)["push"]["peers"] == 1);
  // A version's swarm offers no push extension; the beacon's does.
  test::bt_peer on_version(b.endpoint(), ih2_of(l.published));
  CHECK(on_version.push_id() == 0);
  test::bt_peer on_beacon(b.endpoint(), beacon_ih2(l.key));
  CHECK(on_beacon.push_id() != 0);
  // A notice still travels (on the beacon connection).
  REQUIRE(l[0].cli({"notice", "post", "after the versions closed"}).code == 0);
  CHECK(test::wait_until([&] { return has_notice(b, "after the versions closed"); }, 10s));
}

TEST_CASE("small files: a node sends a complete version's files of one piece whole (in parts of 256 KiB), each once a "
          "connection, refuses the rest, and drops a peer that answers what it never asked or sends garbage",
          "[swarm][push][small]") {
  test::temp_dir base;
  make_site(base / "site");  // index.html (a few dozen bytes) and articles/a.bin (256 KiB: one part)
  std::mt19937 rng(9);
  std::string photo(300000, '\0'), video((1 << 20) + 1, '\0');
  for (auto& c : photo) c = static_cast<char>(rng());
  for (auto& c : video) c = static_cast<char>(rng());
  std::ofstream(base / "site" / "photo.jpg", std::ios::binary) << photo;  // two parts
  std::ofstream(base / "site" / "video.bin", std::ios::binary) << video;  // two pieces: not sent whole
  test::swarm_node a("a", base.path());
  a.start({});
  auto published = a.cli_json({"publish", (base / "site").string(), "--site", "news"});
  // The file indices, from the same torrent made here.
  fs::create_directories(base / "ref");
  fs::copy(base / "site", base / "ref" / "news", fs::copy_options::recursive);
  auto built = net::make_torrent(base / "ref", "news", nullptr);
  REQUIRE(built);
  REQUIRE(net::to_hex(built->ih2) == published["infohash"].get<std::string>());
  lt::error_code ec;
  lt::torrent_info ti(built->torrent, ec, lt::from_span);
  REQUIRE_FALSE(ec);
  int page_index = -1, part_index = -1, photo_index = -1, video_index = -1;
  for (auto i : ti.files().file_range()) {
    auto const name = ti.files().file_name(i);
    if (name == "index.html") page_index = static_cast<int>(i);
    if (name == "a.bin") part_index = static_cast<int>(i);
    if (name == "photo.jpg") photo_index = static_cast<int>(i);
    if (name == "video.bin") video_index = static_cast<int>(i);
  }
  REQUIRE(page_index >= 0);
  REQUIRE(part_index >= 0);
  REQUIRE(photo_index >= 0);
  REQUIRE(video_index >= 0);
  auto slurp = [](fs::path const& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto page = slurp(base / "site" / "index.html");
  auto part = slurp(base / "site" / "articles" / "a.bin");
  // The wire format spelled out (net/detail/small_files.hpp), not built with the node's encoder.
  auto answer = [](int index, std::optional<std::string> const& data, std::size_t offset = 0) {
    return data ? "d1:d" + std::to_string(data->size()) + ":" + *data + "1:fi" + std::to_string(index) + "e" +
                      (offset > 0 ? "1:oi" + std::to_string(offset) + "e" : std::string()) + "e"
                : "d1:fi" + std::to_string(index) + "ee";
  };
  auto ask = [](test::bt_peer& p, int index) {
    REQUIRE(p.send_extended(p.file_id(), "d1:qi" + std::to_string(index) + "ee"));
    return p.next_extended(32);
  };

  test::bt_peer peer(a.endpoint(), ih2_of(published));
  REQUIRE(peer.file_id() != 0);
  // The version is served once the node has it complete, a moment after publish answers.
  bool sent = test::wait_until([&] { return ask(peer, page_index) == answer(page_index, page); }, 10s);
  REQUIRE(sent);
  CHECK(ask(peer, part_index) == answer(part_index, part));  // 256 KiB: one part
  CHECK(ask(peer, photo_index) == answer(photo_index, photo.substr(0, 262144)));
  CHECK(peer.next_extended(32) == answer(photo_index, photo.substr(262144), 262144));
  CHECK(ask(peer, video_index) == answer(video_index, std::nullopt));  // over a piece
  CHECK(ask(peer, 9999) == answer(9999, std::nullopt));                // no such file
  CHECK(ask(peer, part_index) == answer(part_index, std::nullopt));    // once a connection
  // An answer to a question never asked: the node hangs up.
  REQUIRE(peer.send_extended(peer.file_id(), answer(page_index, "x")));
  CHECK(peer.closed_by_node(5s));
  // Garbage, and a message over the bound: the same.
  test::bt_peer garbage(a.endpoint(), ih2_of(published));
  REQUIRE(garbage.send_extended(garbage.file_id(), "this is not bencoding"));
  CHECK(garbage.closed_by_node(5s));
  test::bt_peer oversized(a.endpoint(), ih2_of(published));
  REQUIRE(oversized.send_extended(oversized.file_id(), answer(page_index, std::string(300 * 1024, 'x'))));
  CHECK(oversized.closed_by_node(5s));
  // The node goes on serving others.
  test::bt_peer later(a.endpoint(), ih2_of(published));
  CHECK(ask(later, page_index) == answer(page_index, page));
  a.stop();
}

TEST_CASE("forged, replayed, oversized and flooded push messages are refused; a real notice still gets through", "[swarm][push]") {
  line l(2);
  auto& a = l[0];
  auto& b = l[1];
  REQUIRE(a.cli({"notice", "post", "notice one"}).code == 0);
  REQUIRE(test::wait_until([&] { return has_notice(b, "notice one"); }, 10s));
  auto one = item_of(record(a, l.key, ".notice"));
  REQUIRE(a.cli({"notice", "post", "notice two"}).code == 0);
  REQUIRE(test::wait_until([&] { return has_notice(b, "notice two"); }, 10s));
  auto two = item_of(record(a, l.key, ".notice"));
  auto ih2 = beacon_ih2(l.key);

  SECTION("forged: a bad signature gets the peer disconnected and nothing stored") {
    test::bt_peer rogue(b.endpoint(), ih2);
    REQUIRE(rogue.push_id() != 0);
    auto forged = two;
    forged.seq = 3;
    forged.value = "d3:msg6:forgede";
    REQUIRE(rogue.send_push(net::encode_push_record(forged)));
    CHECK(rogue.closed_by_node(5s));
    CHECK(record(b, l.key, ".notice")["seq"] == 2);
    CHECK(node_status(b)["refused"]["invalid"].get<int>() >= 1);
  }
  SECTION("replayed: an older, validly signed notice is refused and kept as evidence") {
    test::bt_peer rogue(b.endpoint(), ih2);
    REQUIRE(rogue.send_push(net::encode_push_record(one)));
    CHECK(test::wait_until([&] { return node_status(b)["refused"]["rollbacks_and_forks"].get<int>() >= 1; }, 5s));
    CHECK(record(b, l.key, ".notice")["seq"] == 2);
  }
  SECTION("oversized: a message over the limit is not read; the peer is disconnected") {
    test::bt_peer rogue(b.endpoint(), ih2);
    REQUIRE(rogue.send_push(std::string("d1:r") + std::string(net::max_push_payload + 100, 'x') + "e"));
    CHECK(rogue.closed_by_node(5s));
    CHECK(node_status(b)["push"]["dropped_bad"].get<int>() >= 1);
  }
  SECTION("a record of another publisher in this publisher's swarm gets the peer disconnected") {
    test::bt_peer rogue(b.endpoint(), ih2);
    auto other = crypto::key_pair::generate();
    REQUIRE(rogue.send_push(net::encode_push_record(*crypto::sign_item(other, ".notice", 1, "d3:msg5:hello3:sevi0ee"))));
    CHECK(rogue.closed_by_node(5s));
  }
  SECTION("flood: thousands of messages from one peer do not hold up a notice from another") {
    test::bt_peer rogue(b.endpoint(), ih2);
    auto copy = net::encode_push_record(two);  // valid and already held: costs the node the most to look at
    std::string burst;
    for (int i = 0; i < 5000; ++i) burst += std::string{0, 0, 0, 0} + char(20) + char(rogue.push_id()) + copy;
    // Fix up each frame's length prefix.
    auto frame_len = static_cast<std::uint32_t>(copy.size() + 2);
    for (std::size_t at = 0; at < burst.size(); at += 4 + frame_len) {
      burst[at] = static_cast<char>(frame_len >> 24);
      burst[at + 1] = static_cast<char>(frame_len >> 16);
      burst[at + 2] = static_cast<char>(frame_len >> 8);
      burst[at + 3] = static_cast<char>(frame_len);
    }
    (void)rogue.send_raw(burst);  // the node may hang up part-way: that is a pass too
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(a.cli({"notice", "post", "notice three", "--severity", "critical"}).code == 0);
    bool got = test::wait_until([&] { return has_notice(b, "notice three"); }, 10s);
    INFO("b:\n" << b.log());
    REQUIRE(got);
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    auto push = node_status(b)["push"];
    INFO(push.dump());
    CHECK(push["dropped_rate"].get<int>() > 1000);
    CHECK(rogue.closed_by_node(5s));  // far past its limit: disconnected
  }
}

TEST_CASE("a publisher of hundreds of sites answers a newcomer's \"have\" in full, within its rate limit", "[swarm][push]") {
  test::temp_dir base;
  make_site(base / "site");
  test::swarm_node a("a", base.path());
  a.start({});
  auto published = a.cli_json({"publish", (base / "site").string(), "--site", "news"});
  auto address = published["address"].get<std::string>();
  // 300 more pointers of this publisher (sites it could hold), signed with its key.
  auto key = crypto::decode_key_file(*crypto::read_small_file(a.home() / "keys" / "default.key"), std::nullopt);
  REQUIRE(key);
  for (int i = 0; i < 300; ++i) {
    crypto::pointer p;
    p.ih2.fill(static_cast<std::uint8_t>(i));
    p.time = 1700000000;
    p.size = 1000;
    auto item = crypto::sign_item(*key, "site" + std::to_string(i), 1, crypto::encode_pointer(p));
    REQUIRE(item);
    auto body = json{{"item", crypto::to_hex(crypto::as_bytes(crypto::encode_item(*item)))}}.dump();
    auto r = net::local_http_call(a.home() / "control.sock", {"POST", "/v1/records", body});
    REQUIRE(r);
    REQUIRE(r->status == 200);
  }
  test::swarm_node b("b", base.path());
  b.start({}, {"--peer", a.endpoint()});
  REQUIRE(b.cli({"follow", address}).code == 0);  // joins the publisher's beacon swarm
  // All of them, by push (b has no DHT): 128 at once, the rest paced at 40 a second.
  bool answered = test::wait_until([&] { return records(b, address.substr(0, address.find('/'))).size() >= 301; }, 30s);
  INFO(b.log());
  REQUIRE(answered);
  auto push = node_status(b)["push"];
  INFO(push.dump());
  CHECK(push["dropped_rate"] == 0);
  CHECK(push["dropped_bad"] == 0);
  CHECK(push["peers"].get<int>() >= 1);  // still connected
  a.stop();
  b.stop();
}
