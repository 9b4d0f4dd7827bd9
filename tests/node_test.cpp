// Component tests for outlast::node: home, config, keys, the home lock and an in-process node.
#include <sys/stat.h>

#include <boost/program_options/parsers.hpp>
#include <boost/program_options/variables_map.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "net/local_http.hpp"
#include "node/config.hpp"
#include "node/home.hpp"
#include "node/keyring.hpp"
#include "node/node.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace outlast;
using namespace std::chrono_literals;
namespace po = boost::program_options;

namespace {

po::variables_map parse_cli(std::vector<std::string> args) {
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(node::node_command_options()).run(), vm);
  po::notify(vm);
  return vm;
}

mode_t mode_of(std::filesystem::path const& p) {
  struct stat st{};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

}  // namespace

TEST_CASE("home resolution: --home, then OUTLAST_HOME, then XDG_DATA_HOME, then HOME", "[unit][home]") {
  ::setenv("OUTLAST_HOME", "/srv/outlast-env", 1);
  ::setenv("XDG_DATA_HOME", "/srv/xdg", 1);
  CHECK(*node::resolve_home(std::string("/srv/flag")) == "/srv/flag");
  CHECK(*node::resolve_home(std::nullopt) == "/srv/outlast-env");
  ::unsetenv("OUTLAST_HOME");
  CHECK(*node::resolve_home(std::nullopt) == "/srv/xdg/outlast");
  ::unsetenv("XDG_DATA_HOME");
  ::setenv("HOME", "/home/reader", 1);
  CHECK(*node::resolve_home(std::nullopt) == "/home/reader/.local/share/outlast");
  CHECK_FALSE(node::resolve_home(std::string("")));
}

TEST_CASE("init creates a private home, a documented config and a default key, and is idempotent", "[home]") {
  test::temp_dir dir;
  auto home = dir / "h";
  auto first = node::init_home(home);
  REQUIRE(first);
  CHECK(first->created_config);
  REQUIRE(first->created_key);
  CHECK(mode_of(home) == 0700);
  CHECK(mode_of(home / "keys") == 0700);
  CHECK(mode_of(home / "keys/default.key") == 0600);
  auto key = node::keyring(home).find("default");
  REQUIRE(key);
  CHECK(key->key.to_text() == *first->created_key);

  auto second = node::init_home(home);
  REQUIRE(second);
  CHECK_FALSE(second->created_config);
  CHECK_FALSE(second->created_key);
  CHECK(node::keyring(home).find("default")->key == key->key);  // the key was not replaced
}

TEST_CASE("the written config documents every option, and parses with each one set", "[unit][config]") {
  auto text = node::default_config_text();
  auto described = node::node_command_options();
  for (auto const& opt : described.options()) {
    auto name = opt->long_name();
    if (name.rfind("no-", 0) == 0) name = name.substr(3);  // --no-upnp is `upnp = false` in the file
    INFO(name);
    CHECK(text.find("\n#" + name + " = ") != std::string::npos);
  }
  // Uncomment every option line: the result must be a valid config.
  std::string uncommented;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > 1 && line[0] == '#' && line[1] != ' ' && line.find(" = ") != std::string::npos) line = line.substr(1);
    uncommented += line + "\n";
  }
  test::temp_dir dir;
  test::write_file(dir / "outlast.conf", uncommented);
  auto cfg = node::load_node_config(dir.path(), parse_cli({}));
  INFO((cfg ? "" : cfg.err().message));
  REQUIRE(cfg);
  CHECK(cfg->listen == std::vector<std::string>{"0.0.0.0:6881", "[::]:6881"});
  CHECK(cfg->bootstrap.size() == 4);
}

TEST_CASE("config: the command line wins over the file; peers add up", "[unit][config]") {
  test::temp_dir dir;
  test::write_file(dir / "outlast.conf",
             "listen = 127.0.0.1:7000\ngateway = 127.0.0.1:9000\nbootstrap = none\npeer = 10.0.0.1:6881\n"
             "upnp = false\nlsd = true\nlog-level = warning\n");
  auto from_file = node::load_node_config(dir.path(), parse_cli({}));
  REQUIRE(from_file);
  CHECK(from_file->listen == std::vector<std::string>{"127.0.0.1:7000"});
  CHECK(from_file->gateway == "127.0.0.1:9000");
  CHECK(from_file->bootstrap.empty());
  CHECK_FALSE(from_file->upnp);
  CHECK(from_file->lsd);
  CHECK(from_file->log_level == "warning");

  auto both = node::load_node_config(dir.path(), parse_cli({"--listen", "127.0.0.2:0", "--no-lsd", "--peer", "peer.example:1",
                                                            "--bootstrap", "127.0.0.1:1,127.0.0.1:2", "--local-swarm"}));
  REQUIRE(both);
  CHECK(both->listen == std::vector<std::string>{"127.0.0.2:0"});
  CHECK(both->gateway == "127.0.0.1:9000");
  CHECK_FALSE(both->lsd);
  CHECK(both->local_swarm);
  CHECK(both->bootstrap == std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2"});
  CHECK(both->peers == std::vector<std::string>{"10.0.0.1:6881", "peer.example:1"});
}

TEST_CASE("config: bad files and values are named in the error", "[unit][config]") {
  test::temp_dir dir;
  SECTION("unknown option") {
    test::write_file(dir / "outlast.conf", "listne = 127.0.0.1:1\n");
    auto r = node::load_node_config(dir.path(), parse_cli({}));
    REQUIRE_FALSE(r);
    CHECK(r.err().message.find("outlast.conf") != std::string::npos);
    CHECK(r.err().message.find("listne") != std::string::npos);
  }
  SECTION("bad bool") {
    test::write_file(dir / "outlast.conf", "upnp = maybe\n");
    CHECK_FALSE(node::load_node_config(dir.path(), parse_cli({})));
  }
  SECTION("listen must be an IP literal") {
    auto r = node::load_node_config(dir.path(), parse_cli({"--listen", "localhost:6881"}));
    REQUIRE_FALSE(r);
    CHECK(r.err().message.find("listen") != std::string::npos);
  }
  SECTION("bad log level") { CHECK_FALSE(node::load_node_config(dir.path(), parse_cli({"--log-level", "loud"}))); }
  SECTION("a value holding Boost's %placeholder% is refused at once (it used to hang; found by fuzz_config)") {
    test::write_file(dir / "outlast.conf", "# 100% fine in a comment\nupnp = %original_token%\n");
    auto r = node::load_node_config(dir.path(), parse_cli({}));
    REQUIRE_FALSE(r);
    CHECK(r.err().message.find("outlast.conf:2") != std::string::npos);
    // ';' starts no comment for Boost: this line reached its error message and hung it.
    test::write_file(dir / "outlast.conf", ";%invalid_line%\n");
    r = node::load_node_config(dir.path(), parse_cli({}));
    REQUIRE_FALSE(r);
    CHECK(r.err().message.find("outlast.conf:1") != std::string::npos);
    test::write_file(dir / "outlast.conf", "upnp = false # 100%\n");
    CHECK(node::load_node_config(dir.path(), parse_cli({})));
  }
  SECTION("quota and keep-versions bounds") {
    CHECK_FALSE(node::load_node_config(dir.path(), parse_cli({"--keep-versions", "0"})));
    CHECK_FALSE(node::load_node_config(dir.path(), parse_cli({"--max-storage", "-1"})));
    auto ok = node::load_node_config(dir.path(), parse_cli({"--keep-versions", "3", "--max-site-size", "500"}));
    REQUIRE(ok);
    CHECK(ok->keep_versions == 3);
    CHECK(ok->max_site_mb == 500);
  }
  SECTION("gateway threads: 0 (one per four cores) by default, a count, bounded") {
    auto dflt = node::load_node_config(dir.path(), parse_cli({}));
    REQUIRE(dflt);
    CHECK(dflt->gateway_threads == 0);
    auto four = node::load_node_config(dir.path(), parse_cli({"--gateway-threads", "4"}));
    REQUIRE(four);
    CHECK(four->gateway_threads == 4);
    auto r = node::load_node_config(dir.path(), parse_cli({"--gateway-threads", "65"}));
    REQUIRE_FALSE(r);
    CHECK(r.err().message.find("gateway-threads") != std::string::npos);
    CHECK_FALSE(node::load_node_config(dir.path(), parse_cli({"--gateway-threads", "-1"})));
  }
  SECTION("a gateway off loopback needs --gateway-public") {
    auto r = node::load_node_config(dir.path(), parse_cli({"--gateway", "0.0.0.0:8088"}));
    REQUIRE_FALSE(r);
    CHECK(r.err().message.find("--gateway-public") != std::string::npos);
    CHECK(node::load_node_config(dir.path(), parse_cli({"--gateway", "0.0.0.0:8088", "--gateway-public"})));
    CHECK(node::load_node_config(dir.path(), parse_cli({"--gateway", "127.0.0.2:8088"})));
    CHECK(node::load_node_config(dir.path(), parse_cli({"--gateway", "off"})));
  }
}

TEST_CASE("keyring: create, list, export, import, and the errors around them", "[home][keys]") {
  test::temp_dir dir;
  node::keyring keys(dir.path());
  auto a = keys.create("alice", std::nullopt);
  REQUIRE(a);
  auto b = keys.create("bob", std::string("pw"), crypto::kdf_limits::interactive());
  REQUIRE(b);
  CHECK(b->encrypted);
  CHECK(keys.create("alice", std::nullopt).err().code == errc::already_exists);
  CHECK(keys.create("../evil", std::nullopt).err().code == errc::invalid_argument);
  CHECK(keys.create(".hidden", std::nullopt).err().code == errc::invalid_argument);
  CHECK(keys.find("carol").err().code == errc::not_found);

  auto list = keys.list();
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].name == "alice");
  CHECK((*list)[1].name == "bob");

  CHECK(keys.unlock("bob", std::string("pw")));
  CHECK(keys.unlock("bob", std::string("nope")).err().code == errc::wrong_passphrase);

  REQUIRE(keys.export_to("bob", dir / "bob-backup.key"));
  CHECK(mode_of(dir / "bob-backup.key") == 0600);
  CHECK(keys.export_to("bob", dir / "bob-backup.key").err().code == errc::already_exists);

  test::temp_dir other_home;
  node::keyring other(other_home.path());
  auto imported = other.import_from(dir / "bob-backup.key", "bob");
  REQUIRE(imported);
  CHECK(imported->key == b->key);
  CHECK(other.unlock("bob", std::string("pw"))->public_half() == b->key);
  CHECK(other.import_from(dir / "bob-backup.key", "bob2").err().code == errc::already_exists);  // same key twice

  test::write_file(dir / "junk.key", "not a key\n");
  CHECK(other.import_from(dir / "junk.key", "junk").err().code == errc::corrupt);
  CHECK_FALSE(std::filesystem::exists(other_home / "keys/junk.key"));

  std::vector<std::string> problems;
  test::write_file(dir / "keys/broken.key", "outlast-secret-key 1\npublic x\n");
  auto listed = keys.list(&problems);
  REQUIRE(listed);
  CHECK(listed->size() == 2);
  CHECK(problems.size() == 1);
}

TEST_CASE("the home lock admits one node at a time and frees itself", "[home]") {
  test::temp_dir dir;
  {
    auto first = node::home_lock::acquire(dir.path());
    REQUIRE(first);
    auto second = node::home_lock::acquire(dir.path());
    REQUIRE_FALSE(second);
    CHECK(second.err().code == errc::busy);
    CHECK(second.err().message.find(std::to_string(::getpid())) != std::string::npos);
  }
  CHECK(node::home_lock::acquire(dir.path()));
}

TEST_CASE("an in-process node answers status over its socket and stops on request", "[node]") {
  test::temp_dir dir;
  auto cli = parse_cli({"--listen", "127.0.0.1:0", "--bootstrap", "none", "--no-upnp", "--no-natpmp", "--no-lsd", "--log-level", "warning",
                        "--gateway", "127.0.0.1:0"});
  auto cfg = node::load_node_config(dir.path(), cli);
  REQUIRE(cfg);
  node::logger log(node::log_level::warning);
  auto n = node::node::open(*cfg, log);
  INFO((n ? "" : n.err().message));
  REQUIRE(n);

  auto again = node::node::open(*cfg, log);  // the same home, while the first holds it
  REQUIRE_FALSE(again);
  CHECK(again.err().code == errc::busy);

  std::thread runner([&] { (void)(*n)->run(); });
  nlohmann::json status;
  bool listening = test::wait_until([&] {
    auto r = net::local_http_call(node::control_socket_path(dir.path()), {"GET", "/v1/status", ""});
    if (!r || r->status != 200) return false;
    status = nlohmann::json::parse(r->body);
    return !status["listen"].empty();
  }, 10s);
  CHECK(listening);
  CHECK(status["keys"] == 1);
  CHECK(status["sites"] == 0);
  CHECK(status["home"] == dir.path().string());
  CHECK(status.contains("dht_nodes"));
  CHECK(status.contains("peers"));
  CHECK(status.contains("version"));

  (*n)->request_stop();
  runner.join();
  CHECK_FALSE(std::filesystem::exists(node::control_socket_path(dir.path())));
}
