// Functional tests: the real `outlast` binary, driven as a user would from a shell.
#include <signal.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace outlast;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

struct cli {
  test::temp_dir dir;
  std::string home = (dir / "home").string();

  test::run_result operator()(std::vector<std::string> args) const {
    args.insert(args.begin(), {OUTLAST_BINARY, "--home", home});
    return test::run(args, dir.path(), 60s);
  }
  std::unique_ptr<test::process> start_node(std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {OUTLAST_BINARY, "--home", home, "node", "--listen", "127.0.0.1:0",
                                     "--bootstrap", "none", "--no-upnp", "--no-natpmp", "--no-lsd", "--gateway", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<test::process>(args, dir.path());
  }
  // Waits until `outlast status --json` answers with a listen address.
  json wait_for_status(test::process& node) const {
    json status;
    bool up = test::wait_until([&] {
      REQUIRE(node.running());
      auto r = (*this)({"status", "--json"});
      if (r.code != 0) return false;
      status = json::parse(r.out);
      return !status["listen"].empty();
    }, 20s);
    INFO(node.err());
    REQUIRE(up);
    return status;
  }
};

// A publisher key nobody here holds: made by another home's `init`.
std::string crypto_free_key() {
  cli other;
  auto r = other({"init", "--json"});
  REQUIRE(r.code == 0);
  return json::parse(r.out)["default_key"].get<std::string>();
}

std::string dht_id_from_log(std::string const& log) {
  std::smatch m;
  static std::regex const re("node id ([0-9a-f]{40})");
  return std::regex_search(log, m, re) ? m[1].str() : "";
}

}  // namespace

TEST_CASE("usage errors exit 2, help exits 0, no node exits 3", "[functional]") {
  cli outlast;
  auto help = outlast({"--help"});
  CHECK(help.code == 0);
  CHECK(help.out.find("key new") != std::string::npos);
  CHECK(help.out.find("Exit codes") != std::string::npos);
  CHECK(outlast({"--version"}).code == 0);
  CHECK(outlast({"node", "--help"}).out.find("--local-swarm") != std::string::npos);

  auto unknown = outlast({"frobnicate"});
  CHECK(unknown.code == 2);
  CHECK(unknown.err.find("unknown command") != std::string::npos);
  CHECK(outlast({"key"}).code == 2);
  CHECK(outlast({"key", "show"}).code == 2);               // missing NAME
  CHECK(outlast({"status", "extra"}).code == 2);           // too many arguments
  CHECK(outlast({"status", "--no-such-flag"}).code == 2);

  auto status = outlast({"status"});
  CHECK(status.code == 3);
  CHECK(status.err.find("outlast node") != std::string::npos);
}

TEST_CASE("init, keys, export and import as a user does them", "[functional]") {
  cli outlast;
  auto init = outlast({"init"});
  REQUIRE(init.code == 0);
  CHECK(init.out.find("Created the publisher key 'default'") != std::string::npos);
  auto again = outlast({"init", "--json"});
  REQUIRE(again.code == 0);
  auto j = json::parse(again.out);
  CHECK(j["created"] == false);
  CHECK(j["default_key"].get<std::string>().size() == 52);

  REQUIRE(outlast({"key", "new", "alice"}).code == 0);
  auto dup = outlast({"key", "new", "alice"});
  CHECK(dup.code == 1);
  CHECK(dup.err.find("already exists") != std::string::npos);

  auto no_tty = outlast({"key", "new", "secretive", "--encrypt"});
  CHECK(no_tty.code == 2);
  CHECK(no_tty.err.find("passphrase") != std::string::npos);

  { std::ofstream(outlast.dir / "pass.txt") << "correct horse battery\n"; }
  auto bob = outlast({"key", "new", "bob", "--passphrase-file", (outlast.dir / "pass.txt").string(), "--json"});
  REQUIRE(bob.code == 0);
  CHECK(json::parse(bob.out)["encrypted"] == true);

  auto list = outlast({"key", "list", "--json"});
  REQUIRE(list.code == 0);
  auto keys = json::parse(list.out);
  REQUIRE(keys.size() == 3);
  CHECK(keys[0]["name"] == "alice");
  CHECK(keys[1]["name"] == "bob");
  CHECK(keys[2]["name"] == "default");

  auto show = outlast({"key", "show", "alice"});
  REQUIRE(show.code == 0);
  CHECK(show.out == keys[0]["key"].get<std::string>() + "\n");
  CHECK(outlast({"key", "show", "nobody"}).code == 1);

  auto backup = (outlast.dir / "bob.key").string();
  REQUIRE(outlast({"key", "export", "bob", backup}).code == 0);
  cli elsewhere;
  auto imported = elsewhere({"key", "import", backup, "--json"});
  REQUIRE(imported.code == 0);
  CHECK(json::parse(imported.out)["key"] == keys[1]["key"]);
  { std::ofstream(outlast.dir / "bad.key") << "outlast-secret-key 1\ngarbage\n"; }
  auto bad = elsewhere({"key", "import", (outlast.dir / "bad.key").string()});
  CHECK(bad.code == 1);
  CHECK(bad.err.find("damaged key file") != std::string::npos);
}

TEST_CASE("node: start, status over the socket, one node per home, clean stop on SIGTERM, restart", "[functional]") {
  cli outlast;
  REQUIRE(outlast({"init"}).code == 0);
  REQUIRE(outlast({"key", "new", "extra"}).code == 0);
  auto node = outlast.start_node();
  auto status = outlast.wait_for_status(*node);
  CHECK(status["listen"][0].get<std::string>().rfind("127.0.0.1:", 0) == 0);
  CHECK(status["keys"] == 2);
  CHECK(status["sites"] == 0);
  CHECK(status["peers"] == 0);
  CHECK(status["version"].is_string());

  auto text = outlast({"status"});
  REQUIRE(text.code == 0);
  CHECK(text.out.find("listen") != std::string::npos);

  // A key made while the node runs is registered with it.
  REQUIRE(outlast({"key", "new", "late"}).code == 0);
  CHECK(json::parse(outlast({"status", "--json"}).out)["keys"] == 3);

  auto second = outlast.start_node();
  auto second_code = second->wait(20s);
  REQUIRE(second_code);
  CHECK(*second_code == 1);
  CHECK(second->err().find("already running") != std::string::npos);
  CHECK(node->running());  // the first one is unharmed

  REQUIRE(test::wait_until([&] { return !dht_id_from_log(node->err()).empty(); }, 10s));
  auto first_id = dht_id_from_log(node->err());

  node->signal(SIGTERM);
  auto code = node->wait(10s);
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK(node->err().find("stopped cleanly") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(std::filesystem::path(outlast.home) / "control.sock"));
  CHECK(outlast({"status"}).code == 3);

  SECTION("a restarted node keeps its DHT identity") {
    auto again = outlast.start_node();
    outlast.wait_for_status(*again);
    REQUIRE(test::wait_until([&] { return !dht_id_from_log(again->err()).empty(); }, 10s));
    CHECK(dht_id_from_log(again->err()) == first_id);
    again->signal(SIGINT);
    CHECK(again->wait(10s) == std::optional<int>(0));
  }
  SECTION("a node killed with SIGKILL leaves no lock or socket in the way") {
    auto victim = outlast.start_node();
    outlast.wait_for_status(*victim);
    victim->signal(SIGKILL);
    REQUIRE(victim->wait(5s));
    auto after = outlast.start_node();
    outlast.wait_for_status(*after);
    after->signal(SIGTERM);
    CHECK(after->wait(10s) == std::optional<int>(0));
  }
}

TEST_CASE("node: a bad config file or flag is a usage error naming the problem", "[functional]") {
  cli outlast;
  REQUIRE(outlast({"init"}).code == 0);
  {
    std::ofstream conf(std::filesystem::path(outlast.home) / "outlast.conf", std::ios::app);
    conf << "gatway = 127.0.0.1:1\n";
  }
  auto r = outlast({"node"});
  CHECK(r.code == 2);
  CHECK(r.err.find("gatway") != std::string::npos);
  CHECK(r.err.find("outlast.conf") != std::string::npos);

  cli fresh;
  auto bad_listen = fresh({"node", "--listen", "localhost:1"});
  CHECK(bad_listen.code == 2);
  CHECK(bad_listen.err.find("IP literal") != std::string::npos);
}

TEST_CASE("publish, follow and sites: a user's mistakes get clear errors", "[functional]") {
  cli outlast;
  REQUIRE(outlast({"init"}).code == 0);
  auto site = outlast.dir / "site";
  std::filesystem::create_directories(site);
  { std::ofstream(site / "index.html") << "<h1>hello</h1>"; }

  CHECK(outlast({"publish", site.string(), "--site", "blog"}).code == 3);  // no node yet
  auto node = outlast.start_node();
  outlast.wait_for_status(*node);

  auto no_site = outlast({"publish", site.string()});
  CHECK(no_site.code == 2);
  CHECK(no_site.err.find("--site") != std::string::npos);
  CHECK(outlast({"publish", (outlast.dir / "missing").string(), "--site", "blog"}).code == 2);
  auto bad_name = outlast({"publish", site.string(), "--site", "My Blog"});
  CHECK(bad_name.code == 1);
  CHECK(bad_name.err.find("site name") != std::string::npos);
  std::filesystem::create_directories(outlast.dir / "empty");
  auto empty = outlast({"publish", (outlast.dir / "empty").string(), "--site", "blog"});
  CHECK(empty.code == 1);
  CHECK(empty.err.find("no files") != std::string::npos);
  CHECK(outlast({"publish", site.string(), "--site", "blog", "--key", "nobody"}).code == 1);

  auto first = outlast({"publish", site.string(), "--site", "blog", "--json"});
  REQUIRE(first.code == 0);
  auto j = json::parse(first.out);
  for (auto const* k : {"address", "version", "infohash", "url"}) CHECK(j.contains(k));
  CHECK(j["version"] == 1);
  CHECK(j["url"].get<std::string>().find("http://blog.") == 0);
  auto unchanged = outlast({"publish", site.string(), "--site", "blog"});
  CHECK(unchanged.code == 0);
  CHECK(unchanged.out.find("Unchanged") != std::string::npos);
  auto forced = json::parse(outlast({"publish", site.string(), "--site", "blog", "--force", "--json"}).out);
  CHECK(forced["version"] == 2);

  // An encrypted key needs its passphrase; without a terminal, say how to give it.
  { std::ofstream(outlast.dir / "pw") << "s3cret\n"; }
  REQUIRE(outlast({"key", "new", "locked", "--passphrase-file", (outlast.dir / "pw").string()}).code == 0);
  auto locked = outlast({"publish", site.string(), "--site", "notes", "--key", "locked"});
  CHECK(locked.code == 2);
  CHECK(locked.err.find("passphrase") != std::string::npos);
  // (Other files: a one-file site's torrent is named after its file, so the same page under two
  // sites would be one torrent, which a node holds for one site only.)
  auto notes = outlast.dir / "notes";
  std::filesystem::create_directories(notes);
  { std::ofstream(notes / "index.html") << "<h1>notes</h1>"; }
  CHECK(outlast({"publish", notes.string(), "--site", "notes", "--key", "locked", "--passphrase-file",
                 (outlast.dir / "pw").string()}).code == 0);

  auto sites = json::parse(outlast({"sites", "--json"}).out);
  REQUIRE(sites.size() == 2);
  for (auto const& s : sites) {
    for (auto const* k : {"address", "role", "version", "bytes", "complete", "progress", "peers", "age_s"}) CHECK(s.contains(k));
    CHECK(s["role"] == "published");
    CHECK(s["complete"] == true);
  }
  CHECK(outlast({"sites"}).out.find("published") != std::string::npos);

  auto own = outlast({"follow", j["address"].get<std::string>()});
  CHECK(own.code == 1);
  CHECK(own.err.find("you publish") != std::string::npos);
  auto bad = outlast({"follow", "not-an-address"});
  CHECK(bad.code == 1);
  CHECK(bad.err.find("KEY/SITE") != std::string::npos);
  auto stranger = crypto_free_key();
  CHECK(outlast({"unfollow", stranger + "/blog"}).code == 1);
  REQUIRE(outlast({"follow", stranger + "/blog"}).code == 0);
  CHECK(json::parse(outlast({"sites", "--json"}).out).size() == 3);
  REQUIRE(outlast({"unfollow", stranger + "/blog"}).code == 0);
  CHECK(json::parse(outlast({"sites", "--json"}).out).size() == 2);

  node->signal(SIGTERM);
  CHECK(node->wait(20s) == std::optional<int>(0));
}

TEST_CASE("notices: post, list, expiry, and clear errors", "[functional]") {
  cli outlast;
  REQUIRE(outlast({"init"}).code == 0);
  auto node = outlast.start_node();
  outlast.wait_for_status(*node);

  CHECK(outlast({"notice", "post", "x", "--expires", "5q"}).code == 2);
  CHECK(outlast({"notice", "post", "x", "--severity", "loud"}).code == 2);
  CHECK(outlast({"notice", "post"}).code == 2);
  CHECK(outlast({"notice"}).code == 2);
  auto too_long = outlast({"notice", "post", std::string(701, 'a')});
  CHECK(too_long.code == 1);
  CHECK(too_long.err.find("700") != std::string::npos);
  auto bad_url = outlast({"notice", "post", "moved", "--url", "javascript:alert(1)"});
  CHECK(bad_url.code == 1);
  CHECK(bad_url.err.find("http") != std::string::npos);

  auto posted = json::parse(outlast({"notice", "post", "Mirrors only today", "--severity", "warning", "--json"}).out);
  CHECK(posted["seq"] == 1);
  REQUIRE(outlast({"notice", "post", "Our host is down", "--severity", "critical", "--url", "https://example.org/s"}).code == 0);
  REQUIRE(outlast({"notice", "post", "Short-lived", "--expires", "1s"}).code == 0);

  auto list = json::parse(outlast({"notices", "--json"}).out);
  REQUIRE(list.size() >= 2);
  CHECK(list[0]["severity"] == "critical");  // critical on top
  CHECK(list[0]["seq"] == 2);
  CHECK(list[0]["url"] == "https://example.org/s");
  for (auto const* k : {"key", "seq", "severity", "text", "time", "expires"}) CHECK(list[0].contains(k));
  // The short-lived one disappears from the default list once expired, and stays with --all.
  REQUIRE(test::wait_until([&] { return json::parse(outlast({"notices", "--json"}).out).size() == 2; }, 10s));
  auto all = json::parse(outlast({"notices", "--all", "--json"}).out);
  CHECK(all.size() == 3);
  auto key = posted["key"].get<std::string>();
  CHECK(json::parse(outlast({"notices", key, "--json"}).out).size() == 2);
  CHECK(json::parse(outlast({"notices", key + "/blog", "--json"}).out).size() == 2);
  CHECK(outlast({"notices", "nonsense"}).code == 2);
  CHECK(outlast({"notices"}).out.find("Our host is down") != std::string::npos);

  node->signal(SIGTERM);
  CHECK(node->wait(20s) == std::optional<int>(0));
}
