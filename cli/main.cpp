// outlast: the command line. Git-style subcommands; every command but `init`, `node` and `key`
// talks to the running node through its control socket.
//
// Exit codes: 0 ok, 1 the operation failed, 2 bad usage, 3 no node running.
#include <sodium.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <boost/program_options.hpp>
#include <ctime>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "crypto/base32.hpp"
#include "crypto/keys.hpp"
#include "crypto/records.hpp"
#include "net/format.hpp"
#include "net/local_http.hpp"
#include "node/config.hpp"
#include "node/home.hpp"
#include "node/keyring.hpp"
#include "node/log.hpp"
#include "node/node.hpp"

namespace po = boost::program_options;
using json = nlohmann::json;
using namespace outlast;

namespace {

enum exit_code { ok = 0, failed = 1, usage = 2, no_node = 3 };

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct context {
  std::optional<std::string> home_flag;
  bool json_output = false;
  po::variables_map vm;
  std::vector<std::string> args;  // positional arguments after the command words

  std::filesystem::path home() const {
    auto h = node::resolve_home(home_flag);
    if (!h) throw usage_error(h.err().message);
    return *h;
  }
};

int fail(error const& e) {
  std::cerr << "outlast: " << e.message << "\n";
  if (e.code == errc::unavailable) {
    std::cerr << "Start one with `outlast node` (or `systemctl --user start outlast`).\n";
    return no_node;
  }
  return failed;
}

struct command {
  std::string name;       // "key new"
  std::string arguments;  // "NAME"
  std::string summary;
  std::size_t min_args = 0, max_args = 0;
  std::function<po::options_description()> options;
  std::function<int(context&)> run;
};

po::options_description global_options() {
  po::options_description d("Global options");
  d.add_options()
      ("home", po::value<std::string>()->value_name("DIR"), "Node home (default: $OUTLAST_HOME, else $XDG_DATA_HOME/outlast)")
      ("json", po::bool_switch(), "Machine-readable output")
      ("help,h", po::bool_switch(), "Show help");
  return d;
}

po::options_description no_options() { return po::options_description(); }

// --- passphrases ---

std::optional<std::string> read_tty_line(char const* prompt) {
  std::FILE* tty = std::fopen("/dev/tty", "r+");
  if (!tty) return std::nullopt;
  std::fputs(prompt, tty);
  std::fflush(tty);
  termios old{};
  int fd = fileno(tty);
  bool restore = tcgetattr(fd, &old) == 0;
  if (restore) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::string line;
  for (int c; (c = std::fgetc(tty)) != EOF && c != '\n';) line.push_back(static_cast<char>(c));
  if (restore) tcsetattr(fd, TCSAFLUSH, &old);
  std::fputs("\n", tty);
  std::fclose(tty);
  return line;
}

// From --passphrase-file, else $OUTLAST_PASSPHRASE, else a prompt when `ask` (twice to confirm).
std::optional<std::string> passphrase(context const& c, bool ask, bool confirm) {
  if (c.vm.count("passphrase-file")) {
    auto path = c.vm["passphrase-file"].as<std::string>();
    std::ifstream in(path);
    if (!in) throw usage_error("cannot read the passphrase file " + path);
    std::string line;
    std::getline(in, line);
    if (line.empty()) throw usage_error("the passphrase file " + path + " is empty");
    return line;
  }
  if (char const* env = std::getenv("OUTLAST_PASSPHRASE"); env && *env) return std::string(env);
  if (!ask) return std::nullopt;
  auto first = read_tty_line("Passphrase: ");
  if (!first) throw usage_error("a passphrase is needed but there is no terminal: use --passphrase-file or OUTLAST_PASSPHRASE");
  if (first->empty()) throw usage_error("the passphrase is empty");
  if (confirm) {
    auto second = read_tty_line("Passphrase again: ");
    if (!second || *second != *first) throw usage_error("the passphrases do not match");
  }
  return first;
}

po::options_description passphrase_options(bool with_encrypt) {
  po::options_description d("Key options");
  if (with_encrypt) d.add_options()("encrypt", po::bool_switch(), "Protect the key with a passphrase (asked on the terminal)");
  d.add_options()("passphrase-file", po::value<std::string>()->value_name("FILE"),
                  "Read the passphrase from the first line of FILE (or set OUTLAST_PASSPHRASE)");
  return d;
}

// --- commands ---

int cmd_init(context& c) {
  auto home = c.home();
  auto r = node::init_home(home);
  if (!r) return fail(r.err());
  auto def = node::keyring(home).find("default");
  if (c.json_output) {
    std::cout << json{{"home", home.string()}, {"created", r->created_home || r->created_config || r->created_key},
                      {"default_key", def ? json(def->key.to_text()) : json(nullptr)}}
              << "\n";
    return ok;
  }
  if (r->created_config) std::cout << "Wrote " << (home / "outlast.conf").string() << "\n";
  if (r->created_key) std::cout << "Created the publisher key 'default': " << *r->created_key << "\n";
  if (!r->created_config && !r->created_key) std::cout << "Already initialised: " << home.string() << "\n";
  std::cout << "Home: " << home.string() << "\nNext: outlast node\n";
  return ok;
}

int cmd_node(context& c) {
  auto home = c.home();
  auto cfg = node::load_node_config(home, c.vm);
  if (!cfg) {
    std::cerr << "outlast: " << cfg.err().message << "\n";
    return usage;
  }
  node::logger log(node::parse_log_level(cfg->log_level));
  auto n = node::node::open(std::move(*cfg), log);
  if (!n) {
    log.error("node", n.err().message);
    return failed;
  }
  auto st = (*n)->run();
  if (!st) {
    log.error("node", st.err().message);
    return failed;
  }
  return ok;
}

result<json> call_node(context const& c, std::string method, std::string target, std::string body = {},
                       std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  auto r = net::local_http_call(node::control_socket_path(c.home()), {std::move(method), std::move(target), std::move(body)}, timeout);
  if (!r) return r.err();
  auto j = json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return make_error(errc::io_error, "the node sent a malformed answer");
  if (r->status >= 400) return make_error(errc::io_error, j.value("error", "the node refused: HTTP " + std::to_string(r->status)));
  return j;
}

int cmd_status(context& c) {
  auto s = call_node(c, "GET", "/v1/status");
  if (!s) return fail(s.err());
  if (c.json_output) {
    std::cout << s->dump() << "\n";
    return ok;
  }
  auto const& j = *s;
  std::string listen;
  for (auto const& l : j["listen"]) listen += (listen.empty() ? "" : ", ") + l.get<std::string>();
  std::cout << std::left;
  auto row = [](char const* k, std::string const& v) { std::cout << std::setw(10) << k << v << "\n"; };
  row("node", "running (pid " + std::to_string(j.value("pid", 0)) + ", up " + std::to_string(j.value("uptime_s", 0)) + " s)");
  row("version", j.value("version", "?"));
  row("home", j.value("home", "?"));
  row("listen", listen.empty() ? "(not yet listening)" : listen);
  row("gateway", j["gateway"].is_string() ? j["gateway"].get<std::string>() : "not serving");
  row("dht", std::string(j.value("dht_running", false) ? "running, " : "starting, ") + std::to_string(j.value("dht_nodes", 0)) + " nodes");
  row("peers", std::to_string(j.value("peers", 0)));
  row("sites", std::to_string(j.value("sites", 0)));
  row("keys", std::to_string(j.value("keys", 0)));
  if (j.contains("storage") && j["storage"].is_object()) {
    auto const& st = j["storage"];
    auto max = st.value("max", std::int64_t(0));
    row("storage", net::human_bytes(double(st.value("used", std::int64_t(0)))) + " used" +
                       (max > 0 ? " of " + net::human_bytes(double(max)) : std::string(", no node limit")) + ", keep " +
                       std::to_string(st.value("keep_versions", 2)) + " versions per site" +
                       (st.value("refused_over_quota", 0) > 0 ? ", " + std::to_string(st.value("refused_over_quota", 0)) + " refused over quota"
                                                               : std::string()));
  }
  if (j.contains("bandwidth") && j["bandwidth"].is_object()) {
    auto rate = [](std::int64_t b) { return b > 0 ? net::human_bytes(double(b)) + "/s" : std::string("unlimited"); };
    row("limits", "upload " + rate(j["bandwidth"].value("max_upload", std::int64_t(0))) + ", download " +
                      rate(j["bandwidth"].value("max_download", std::int64_t(0))));
  }
  if (j.contains("corrupt") && j["corrupt"].value("bytes_discarded", std::int64_t(0)) > 0)
    row("corrupt data", net::human_bytes(double(j["corrupt"].value("bytes_discarded", std::int64_t(0)))) +
                            " from peers failed its hash check and was discarded; " +
                            std::to_string(j["corrupt"].value("peers_banned", 0)) + " peers banned for it");
  if (j.contains("push") && j["push"].is_object()) {
    auto const& p = j["push"];
    if (!p.value("enabled", false)) row("push", "off (DHT polling only)");
    else
      row("push", std::to_string(p.value("peers", 0)) + " connections, " + std::to_string(p.value("received", 0)) + " messages in, " +
                      std::to_string(p.value("sent", 0)) + " out, " +
                      std::to_string(p.value("dropped_rate", 0) + p.value("dropped_bad", 0)) + " dropped");
  }
  if (j.contains("refused")) {
    auto const& r = j["refused"];
    auto n = r.value("rollbacks_and_forks", 0) + r.value("invalid", 0);
    row("refused", std::to_string(n) + " records" + (n ? " (last: " + r.value("last", std::string("?")) + ")" : ""));
  }
  return ok;
}

// Tells a running node that the key files changed; no node is fine.
void notify_keys_changed(context const& c) { (void)call_node(c, "POST", "/v1/keys/reload"); }

json key_json(node::key_entry const& k) { return {{"name", k.name}, {"key", k.key.to_text()}, {"encrypted", k.encrypted}}; }

int cmd_key_new(context& c) {
  bool encrypt = c.vm["encrypt"].as<bool>() || c.vm.count("passphrase-file") || std::getenv("OUTLAST_PASSPHRASE");
  auto pass = encrypt ? passphrase(c, true, true) : std::nullopt;
  if (!encrypt)
    std::cerr << "Note: the key is stored unencrypted (mode 0600). Use --encrypt to protect it with a passphrase.\n";
  auto k = node::keyring(c.home()).create(c.args[0], pass);
  if (!k) return fail(k.err());
  notify_keys_changed(c);
  if (c.json_output) std::cout << key_json(*k) << "\n";
  else std::cout << "Created key '" << k->name << "': " << k->key.to_text() << "\n";
  return ok;
}

int cmd_key_list(context& c) {
  std::vector<std::string> problems;
  auto keys = node::keyring(c.home()).list(&problems);
  if (!keys) return fail(keys.err());
  for (auto const& p : problems) std::cerr << "outlast: warning: " << p << "\n";
  if (c.json_output) {
    json out = json::array();
    for (auto const& k : *keys) out.push_back(key_json(k));
    std::cout << out << "\n";
    return ok;
  }
  if (keys->empty()) std::cout << "No keys. Create one with: outlast key new NAME\n";
  for (auto const& k : *keys)
    std::cout << std::left << std::setw(16) << k.name << " " << k.key.to_text() << (k.encrypted ? "  (encrypted)" : "") << "\n";
  return ok;
}

int cmd_key_show(context& c) {
  auto k = node::keyring(c.home()).find(c.args[0]);
  if (!k) return fail(k.err());
  if (c.json_output) std::cout << key_json(*k) << "\n";
  else std::cout << k->key.to_text() << "\n";
  return ok;
}

int cmd_key_export(context& c) {
  auto st = node::keyring(c.home()).export_to(c.args[0], c.args[1]);
  if (!st) return fail(st.err());
  if (c.json_output) std::cout << json{{"name", c.args[0]}, {"file", c.args[1]}} << "\n";
  else std::cerr << "Wrote the secret key '" << c.args[0] << "' to " << c.args[1]
                 << " (mode 0600). Anyone holding this file can publish as you: keep it safe.\n";
  return ok;
}

int cmd_key_import(context& c) {
  std::filesystem::path file = c.args[0];
  std::string name = c.vm.count("name") ? c.vm["name"].as<std::string>() : file.stem().string();
  auto k = node::keyring(c.home()).import_from(file, name);
  if (!k) return fail(k.err());
  notify_keys_changed(c);
  if (c.json_output) std::cout << key_json(*k) << "\n";
  else std::cout << "Imported key '" << k->name << "': " << k->key.to_text() << "\n";
  return ok;
}

using net::human_age;
using net::human_bytes;

int cmd_publish(context& c) {
  std::error_code ec;
  auto dir = std::filesystem::absolute(c.args[0], ec);
  if (ec || !std::filesystem::is_directory(dir)) throw usage_error(c.args[0] + " is not a directory");
  if (!c.vm.count("site")) throw usage_error("--site NAME is required (the site's name in its address)");
  auto key_name = c.vm.count("key") ? c.vm["key"].as<std::string>() : std::string("default");
  auto key = node::keyring(c.home()).find(key_name);
  if (!key) return fail(key.err());
  json req = {{"dir", dir.lexically_normal().string()}, {"site", c.vm["site"].as<std::string>()}, {"key", key_name},
              {"force", c.vm["force"].as<bool>()}, {"no_copy", c.vm["no-copy"].as<bool>()}};
  if (key->encrypted) req["passphrase"] = *passphrase(c, true, false);
  std::array<std::uint8_t, 12> id;
  randombytes_buf(id.data(), id.size());
  auto job = crypto::to_hex(id);
  req["job"] = job;

  // The publish call returns when the version is signed and announced; meanwhile a second
  // connection reads the job's progress for the bar.
  std::atomic<bool> done{false};
  std::thread bar;
  bool tty = ::isatty(2) && !c.json_output;
  if (tty) {
    bar = std::thread([&] {
      while (!done) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        if (done) break;
        auto p = call_node(c, "GET", "/v1/jobs/" + job);
        if (!p) continue;
        double d = (*p)["done"].get<double>(), t = std::max(1.0, (*p)["total"].get<double>());
        int width = 30, fill = static_cast<int>(width * d / t);
        std::fprintf(stderr, "\r%-8s [%s%s] %3.0f%%  %s / %s   ", (*p)["phase"].get<std::string>().c_str(),
                     std::string(static_cast<std::size_t>(fill), '#').c_str(), std::string(static_cast<std::size_t>(width - fill), ' ').c_str(),
                     100 * d / t, human_bytes(d).c_str(), human_bytes(t).c_str());
      }
    });
  }
  auto r = call_node(c, "POST", "/v1/publish", req.dump(), std::chrono::hours(6));
  done = true;
  if (bar.joinable()) {
    bar.join();
    std::fprintf(stderr, "\r%70s\r", "");
  }
  if (!r) return fail(r.err());
  auto const& j = *r;
  if (c.json_output) {
    std::cout << j.dump() << "\n";
    return ok;
  }
  for (auto const& n : j["notes"]) std::cerr << "note: " << n.get<std::string>() << "\n";
  if (j.value("unchanged", false))
    std::cout << "Unchanged: " << j["address"].get<std::string>() << " is still version " << j["version"] << " (use --force to publish it again)\n";
  else
    std::cout << "Published version " << j["version"] << " of " << j["address"].get<std::string>() << "\n";
  std::cout << "  address   " << j["address"].get<std::string>() << "\n"
            << "  version   " << j["version"] << "\n"
            << "  files     " << j["files"] << " (" << human_bytes(j["bytes"].get<double>()) << ")"
            << (j.value("linked_files", 0) > 0 ? ", " + std::to_string(j["linked_files"].get<int>()) + " unchanged since the last version (linked, not copied)" : std::string())
            << "\n"
            << "  infohash  " << j["infohash"].get<std::string>() << "\n"
            << "  magnet    " << j["magnet"].get<std::string>() << "\n"
            << "  gateway   " << j["url"].get<std::string>() << "\n";
  if (!j.value("copied", true))
    std::cout << "  seeded    from " << dir.lexically_normal().string() << " itself (--no-copy): do not change these files\n"
              << "            while this version is the newest; publish again after editing\n";
  std::cout << "Mirrors follow it with: outlast follow " << j["address"].get<std::string>() << "\n";
  return ok;
}

// "500M", "2G", "750k", "123456" (bytes; decimal units) -> bytes. Throws usage_error.
std::int64_t parse_size(std::string const& text) {
  auto digits_end = text.find_first_not_of("0123456789");
  auto digits = text.substr(0, digits_end);
  auto unit = digits_end == std::string::npos ? std::string() : text.substr(digits_end);
  if (digits.empty() || digits.size() > 12) throw usage_error("a size is a number with an optional unit: 750k, 500M, 2G or 1T");
  std::int64_t n = std::stoll(digits);
  std::int64_t mult = 1;
  if (unit == "k" || unit == "K" || unit == "kB") mult = 1000;
  else if (unit == "M" || unit == "MB") mult = 1000 * 1000;
  else if (unit == "G" || unit == "GB") mult = 1000LL * 1000 * 1000;
  else if (unit == "T" || unit == "TB") mult = 1000LL * 1000 * 1000 * 1000;
  else if (!unit.empty() && unit != "B") throw usage_error("unknown size unit '" + unit + "': use k, M, G or T");
  if (n <= 0) throw usage_error("a size must be more than zero");
  return n * mult;
}

// ADDRESS@VERSION -> (address, version). Throws usage_error.
std::pair<std::string, std::int64_t> parse_pinned(std::string const& text) {
  auto at = text.rfind('@');
  if (at == std::string::npos || at + 1 == text.size() || text.find_first_not_of("0123456789", at + 1) != std::string::npos)
    throw usage_error("give the version as KEY/SITE@VERSION, e.g. " + text.substr(0, at) + "@3");
  return {text.substr(0, at), std::stoll(text.substr(at + 1))};
}

int cmd_pin(context& c, bool on) {
  auto [address, version] = parse_pinned(c.args[0]);
  auto r = call_node(c, "POST", on ? "/v1/pin" : "/v1/unpin", json{{"address", address}, {"version", version}}.dump());
  if (!r) return fail(r.err());
  if (c.json_output) std::cout << r->dump() << "\n";
  else std::cout << (on ? "Pinned " : "Unpinned ") << address << "@" << version
                 << (on ? ": kept until you unpin it\n" : ": it goes when keep-versions says so\n");
  return ok;
}

int cmd_gc(context& c) {
  auto r = call_node(c, "POST", "/v1/gc", "{}", std::chrono::minutes(10));
  if (!r) return fail(r.err());
  if (c.json_output) std::cout << r->dump() << "\n";
  else std::cout << "Freed " << human_bytes((*r)["freed"].get<double>()) << "\n";
  return ok;
}

int cmd_follow(context& c, bool follow) {
  json req = {{"address", c.args[0]}};
  if (follow && c.vm.count("max-size")) req["max_size"] = parse_size(c.vm["max-size"].as<std::string>());
  for (auto const* opt : {"max-upload-rate", "max-download-rate"})
    if (follow && c.vm.count(opt)) {
      auto kbps = c.vm[opt].as<int>();
      if (kbps < 0 || kbps > 2000000) throw usage_error(std::string("--") + opt + " is in kB/s, from 0 (no limit of its own) to 2000000");
      req[std::string(opt) == "max-upload-rate" ? "max_upload_rate" : "max_download_rate"] = kbps;
    }
  auto r = call_node(c, "POST", follow ? "/v1/follow" : "/v1/unfollow", req.dump());
  if (!r) return fail(r.err());
  if (c.json_output) std::cout << r->dump() << "\n";
  else if (follow) std::cout << "Following " << (*r)["address"].get<std::string>() << "; see progress with: outlast sites\n";
  else std::cout << "Unfollowed " << (*r)["address"].get<std::string>() << " and removed its files\n";
  return ok;
}

int cmd_export(context& c) {
  auto file = std::filesystem::absolute(c.args[1]);
  bool all = c.vm["all"].as<bool>();
  auto r = call_node(c, "POST", "/v1/export", json{{"address", c.args[0]}, {"file", file.string()}, {"all", all}}.dump(),
                     std::chrono::hours(2));
  if (!r) return fail(r.err());
  if (c.json_output) {
    std::cout << r->dump() << "\n";
    return ok;
  }
  auto const& versions = (*r)["versions"];
  std::string which;
  for (auto const& v : versions) which += (which.empty() ? "" : ", ") + std::to_string(v.get<std::int64_t>());
  std::cout << "Wrote version" << (versions.size() > 1 ? "s " : " ") << which << " of " << (*r)["address"].get<std::string>() << " to "
            << file.string() << " (" << human_bytes((*r)["bytes"].get<double>()) << " of files, " << (*r)["records"].get<int>()
            << " signed records)\n";
  for (auto const& sk : (*r)["skipped"])
    std::cout << "Left out version " << sk["version"].get<std::int64_t>() << ": " << sk["reason"].get<std::string>() << "\n";
  std::cout << "Carry it anywhere; `outlast import " << file.filename().string() << "` checks it against the publisher's key.\n";
  return ok;
}

int cmd_import(context& c) {
  auto file = std::filesystem::absolute(c.args[0]);
  auto r = call_node(c, "POST", "/v1/import", json{{"file", file.string()}}.dump(), std::chrono::hours(2));
  if (!r) return fail(r.err());
  if (c.json_output) std::cout << r->dump() << "\n";
  else if ((*r)["imported"].get<bool>()) {
    auto const& versions = (*r)["versions"];
    std::string which;
    for (auto const& v : versions) which += (which.empty() ? "" : ", ") + std::to_string(v.get<std::int64_t>());
    std::cout << "Imported version" << (versions.size() > 1 ? "s " : " ") << which << " of " << (*r)["address"].get<std::string>()
              << ", verified against the publisher's key; served and seeded now\n";
  }
  else
    std::cout << "Nothing to import: " << (*r)["note"].get<std::string>() << "\n";
  return ok;
}

int cmd_sites(context& c) {
  auto r = call_node(c, "GET", "/v1/sites");
  if (!r) return fail(r.err());
  if (c.json_output) {
    std::cout << r->dump() << "\n";
    return ok;
  }
  if (r->empty()) {
    std::cout << "No sites. Publish one with `outlast publish DIR --site NAME`, or follow one with `outlast follow KEY/SITE`.\n";
    return ok;
  }
  std::cout << std::left << std::setw(60) << "ADDRESS" << std::setw(10) << "ROLE" << std::setw(9) << "VERSION" << std::setw(11)
            << "SIZE" << std::setw(10) << "STATE" << std::setw(7) << "PEERS" << "AGE\n";
  for (auto const& s : *r) {
    std::string state = s["complete"].get<bool>() ? "complete"
                        : s.contains("queued")    ? "queued"
                                                  : std::to_string(static_cast<int>(100 * s["progress"].get<double>())) + "%";
    std::string version = std::to_string(s["version"].get<std::int64_t>());
    if (s["latest"].get<std::int64_t>() > s["version"].get<std::int64_t>()) version += "->" + std::to_string(s["latest"].get<std::int64_t>());
    std::cout << std::setw(60) << s["address"].get<std::string>() << std::setw(10) << s["role"].get<std::string>() << std::setw(9)
              << version << std::setw(11) << human_bytes(s["bytes"].get<double>()) << std::setw(10) << state << std::setw(7)
              << s["peers"].get<int>() << (s["age_s"].is_null() ? "-" : human_age(s["age_s"].get<std::int64_t>())) << "\n";
    if (s.contains("error")) std::cout << "    problem: " << s["error"].get<std::string>() << "\n";
    auto up = s.value("max_upload_rate", 0), down = s.value("max_download_rate", 0);
    if (up > 0 || down > 0)
      std::cout << "    rate limits: upload " << (up > 0 ? std::to_string(up) + " kB/s" : "none") << ", download "
                << (down > 0 ? std::to_string(down) + " kB/s" : "none") << "\n";
  }
  return ok;
}

// "90s", "30m", "12h", "7d" -> seconds. Throws usage_error.
std::int64_t parse_duration(std::string const& text) {
  if (text.size() < 2) throw usage_error("a duration is a number and a unit: 90s, 30m, 12h or 7d");
  auto unit = text.back();
  auto digits = text.substr(0, text.size() - 1);
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
    throw usage_error("'" + text + "' is not a duration: use a number and a unit, as in 90s, 30m, 12h or 7d");
  std::int64_t n = std::stoll(digits);
  switch (unit) {
    case 's': return n;
    case 'm': return n * 60;
    case 'h': return n * 3600;
    case 'd': return n * 86400;
    default: throw usage_error("'" + text + "': the unit must be s, m, h or d");
  }
}

int cmd_notice_post(context& c) {
  auto key_name = c.vm.count("key") ? c.vm["key"].as<std::string>() : std::string("default");
  auto key = node::keyring(c.home()).find(key_name);
  if (!key) return fail(key.err());
  auto severity = c.vm.count("severity") ? c.vm["severity"].as<std::string>() : std::string("info");
  if (!crypto::parse_severity(severity)) throw usage_error("--severity must be info, warning or critical");
  json req = {{"text", c.args[0]}, {"key", key_name}, {"severity", severity}};
  if (c.vm.count("expires")) req["expires_in"] = parse_duration(c.vm["expires"].as<std::string>());
  if (c.vm.count("url")) req["url"] = c.vm["url"].as<std::string>();
  if (key->encrypted) req["passphrase"] = *passphrase(c, true, false);
  auto r = call_node(c, "POST", "/v1/notices", req.dump());
  if (!r) return fail(r.err());
  if (c.json_output) std::cout << r->dump() << "\n";
  else std::cout << "Posted " << (*r)["severity"].get<std::string>() << " notice " << (*r)["seq"] << " as " << (*r)["key"].get<std::string>() << "\n";
  return ok;
}

int cmd_notices(context& c) {
  std::string target = "/v1/notices";
  std::string sep = "?";
  if (!c.args.empty()) {
    auto text = c.args[0].substr(0, c.args[0].find('/'));  // ADDRESS or KEY: the key part
    auto key = crypto::parse_public_key(text);
    if (!key) throw usage_error("'" + c.args[0] + "' is neither a KEY nor a KEY/SITE address: " + key.err().message);
    target += sep + "key=" + key->to_text();
    sep = "&";
  }
  if (c.vm["all"].as<bool>()) target += sep + "all=1";
  auto r = call_node(c, "GET", target);
  if (!r) return fail(r.err());
  if (c.json_output) {
    std::cout << r->dump() << "\n";
    return ok;
  }
  if (r->empty()) std::cout << "No notices.\n";
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (auto const& n : *r) {
    std::cout << std::left << std::setw(9) << n["severity"].get<std::string>() << human_age(now - n["time"].get<std::int64_t>()) << " ago  "
              << n["key"].get<std::string>().substr(0, 12) << "...  #" << n["seq"] << (n["expired"].get<bool>() ? "  (expired)" : "") << "\n    "
              << n["text"].get<std::string>() << "\n";
    if (n.contains("url")) std::cout << "    " << n["url"].get<std::string>() << "\n";
  }
  return ok;
}

std::vector<command> const& commands() {
  static std::vector<command> const list = {
      {"init", "", "Create the home, its config file and a default publisher key (idempotent)", 0, 0, no_options, cmd_init},
      {"node", "", "Run the node in the foreground (Ctrl-C stops it)", 0, 0, node::node_command_options, cmd_node},
      {"status", "", "Show the running node's state", 0, 0, no_options, cmd_status},
      {"publish", "DIR", "Sign and announce the next version of a site made of DIR's files", 1, 1, [] {
         po::options_description d("Publish options");
         d.add_options()("site", po::value<std::string>()->value_name("NAME"), "The site's name: 1-63 of a-z, 0-9, '-'")
             ("key", po::value<std::string>()->value_name("NAME"), "Publisher key to sign with (default: default)")
             ("force", po::bool_switch(), "Publish a new version even if nothing changed")
             ("no-copy", po::bool_switch(), "Seed from DIR itself instead of a private copy (large sites: no second copy on "
                                            "disk; edits then need a new publish before they are served)");
         d.add(passphrase_options(false));
         return d;
       }, cmd_publish},
      {"follow", "ADDRESS", "Mirror a site: fetch, verify and seed every new version of KEY/SITE", 1, 1, [] {
         po::options_description d("Follow options");
         d.add_options()("max-size", po::value<std::string>()->value_name("SIZE"),
                         "Refuse versions larger than this (e.g. 500M, 2G); default: max-site-size")
             ("max-upload-rate", po::value<int>()->value_name("KB/S"), "Upload limit of this site's swarms, kB/s; 0 lifts it")
             ("max-download-rate", po::value<int>()->value_name("KB/S"), "Download limit of this site's swarms, kB/s; 0 lifts it");
         return d;
       }, [](context& c) { return cmd_follow(c, true); }},
      {"pin", "ADDRESS@VERSION", "Keep a version of a site on disk (and seeded) whatever keep-versions says", 1, 1, no_options,
       [](context& c) { return cmd_pin(c, true); }},
      {"unpin", "ADDRESS@VERSION", "Let a pinned version go when keep-versions says so", 1, 1, no_options,
       [](context& c) { return cmd_pin(c, false); }},
      {"gc", "", "Remove versions beyond keep-versions (pinned ones stay) and files no version names", 0, 0, no_options, cmd_gc},
      {"unfollow", "ADDRESS", "Stop mirroring a site and remove its files", 1, 1, no_options, [](context& c) { return cmd_follow(c, false); }},
      {"notice post", "TEXT", "Sign and send a notice to everyone who follows your key (at most 700 bytes)", 1, 1, [] {
         po::options_description d("Notice options");
         d.add_options()("key", po::value<std::string>()->value_name("NAME"), "Publisher key to sign with (default: default)")
             ("severity", po::value<std::string>()->value_name("LEVEL"), "info (default), warning or critical")
             ("expires", po::value<std::string>()->value_name("DURATION"), "Hide it after this long: 90s, 30m, 12h, 7d")
             ("url", po::value<std::string>()->value_name("URL"), "Where to read more (http or https)");
         d.add(passphrase_options(false));
         return d;
       }, cmd_notice_post},
      {"notices", "[ADDRESS|KEY]", "List the notices this node holds, critical first", 0, 1, [] {
         po::options_description d("Notices options");
         d.add_options()("all", po::bool_switch(), "Include expired notices");
         return d;
       }, cmd_notices},
      {"export", "ADDRESS FILE", "Write a site's latest complete version, its signed pointer and recent notices to one file", 2, 2, [] {
         po::options_description d("Export options");
         d.add_options()("all", po::bool_switch(), "Every complete version this node keeps, each with its signed pointer");
         return d;
       }, cmd_export},
      {"import", "FILE", "Check a bundle against its publisher's key, then serve and seed the site it carries", 1, 1, no_options,
       cmd_import},
      {"sites", "", "List published and followed sites with their version, size, state, peers and age", 0, 0, no_options, cmd_sites},
      {"key new", "NAME", "Create a publisher key", 1, 1, [] { return passphrase_options(true); }, cmd_key_new},
      {"key list", "", "List the publisher keys of this home", 0, 0, no_options, cmd_key_list},
      {"key show", "NAME", "Print a key's public text (its 52-character address part)", 1, 1, no_options, cmd_key_show},
      {"key export", "NAME FILE", "Copy a secret key file out (as stored: encrypted stays encrypted)", 2, 2, no_options, cmd_key_export},
      {"key import", "FILE", "Add a secret key file to this home",
       1, 1, [] {
         po::options_description d("Import options");
         d.add_options()("name", po::value<std::string>()->value_name("NAME"), "Name for the key (default: the file's name)");
         return d;
       }, cmd_key_import},
  };
  return list;
}

void print_overview(std::ostream& out) {
  out << "outlast " << "- keep sites and notices reachable through a swarm of mirrors\n\n"
         "Usage: outlast [--home DIR] [--json] COMMAND [ARGS]\n\nCommands:\n";
  for (auto const& c : commands())
    out << "  " << std::left << std::setw(24) << (c.name + (c.arguments.empty() ? "" : " " + c.arguments)) << c.summary << "\n";
  out << "\n" << global_options() << "\nRun `outlast COMMAND --help` for a command's options.\n"
      << "Exit codes: 0 ok, 1 failed, 2 bad usage, 3 no node running.\n";
}

void print_help(command const& c) {
  std::cout << "Usage: outlast " << c.name << (c.arguments.empty() ? "" : " " + c.arguments) << " [options]\n\n"
            << c.summary << "\n\n";
  auto opts = c.options();
  if (!opts.options().empty()) std::cout << opts << "\n";
  std::cout << global_options();
}

// Global options may stand anywhere; the command words are the first two non-option arguments.
bool takes_value(std::string const& arg) { return arg == "--home" || arg == "--passphrase-file" || arg == "--name" ||
                                                  arg == "--listen" || arg == "--gateway" || arg == "--bootstrap" ||
                                                  arg == "--peer" || arg == "--log-level" || arg == "--site" ||
                                                  arg == "--key" || arg == "--poll-interval" || arg == "--republish-interval" ||
                                                  arg == "--resume-interval" || arg == "--max-upload-rate" ||
                                                  arg == "--max-download-rate" || arg == "--severity" ||
                                                  arg == "--expires" || arg == "--url"; }

int dispatch(int argc, char** argv) {
  std::vector<std::string> all(argv + 1, argv + argc);
  std::vector<std::string> words;
  for (std::size_t i = 0; i < all.size() && words.size() < 2; ++i) {
    if (all[i] == "--") break;
    if (all[i].rfind("-", 0) == 0) {
      if (takes_value(all[i])) ++i;
      continue;
    }
    words.push_back(all[i]);
  }
  if (words.empty()) {
    bool help = std::find(all.begin(), all.end(), "--help") != all.end() || std::find(all.begin(), all.end(), "-h") != all.end();
    if (std::find(all.begin(), all.end(), "--version") != all.end()) {
      std::cout << "outlast " << OUTLAST_VERSION << "\n";
      return ok;
    }
    print_overview(help ? std::cout : std::cerr);
    return help ? ok : usage;
  }
  if (words[0] == "help") {
    print_overview(std::cout);
    return ok;
  }
  command const* cmd = nullptr;
  std::size_t used_words = 1;
  for (auto const& c : commands()) {
    if (words.size() >= 2 && c.name == words[0] + " " + words[1]) { cmd = &c; used_words = 2; break; }
    if (c.name == words[0]) { cmd = &c; used_words = 1; break; }
  }
  if (!cmd) {
    if (words[0] == "notice") {
      std::cerr << "outlast: 'notice' needs a subcommand: post\n";
      return usage;
    }
    if (words[0] == "key") {
      std::cerr << "outlast: 'key' needs a subcommand: new, list, show, export or import\n";
      bool help = std::find(all.begin(), all.end(), "--help") != all.end();
      return help ? ok : usage;
    }
    std::cerr << "outlast: unknown command '" << words[0] << "'. Run `outlast --help` for the list.\n";
    return usage;
  }

  // Remove the command words (their first occurrences) and parse the rest.
  std::vector<std::string> rest = all;
  for (std::size_t w = 0; w < used_words; ++w) {
    for (std::size_t i = 0; i < rest.size(); ++i) {
      if (rest[i].rfind("-", 0) == 0) {
        if (takes_value(rest[i])) ++i;
        continue;
      }
      if (rest[i] == words[w]) { rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(i)); break; }
    }
  }
  po::options_description desc;
  desc.add(global_options()).add(cmd->options());
  desc.add_options()("args", po::value<std::vector<std::string>>());
  po::positional_options_description pos;
  pos.add("args", -1);
  context c;
  try {
    po::store(po::command_line_parser(rest).options(desc).positional(pos).run(), c.vm);
    po::notify(c.vm);
  } catch (po::error const& e) {
    std::cerr << "outlast " << cmd->name << ": " << e.what() << "\nRun `outlast " << cmd->name << " --help` for usage.\n";
    return usage;
  }
  if (c.vm["help"].as<bool>()) {
    print_help(*cmd);
    return ok;
  }
  if (c.vm.count("args")) c.args = c.vm["args"].as<std::vector<std::string>>();
  if (c.args.size() < cmd->min_args || c.args.size() > cmd->max_args) {
    std::cerr << "outlast " << cmd->name << ": expected " << (cmd->arguments.empty() ? "no arguments" : cmd->arguments)
              << ", got " << c.args.size() << " argument(s)\nUsage: outlast " << cmd->name
              << (cmd->arguments.empty() ? "" : " " + cmd->arguments) << " [options]\n";
    return usage;
  }
  if (c.vm.count("home")) c.home_flag = c.vm["home"].as<std::string>();
  c.json_output = c.vm["json"].as<bool>();
  try {
    return cmd->run(c);
  } catch (usage_error const& e) {
    std::cerr << "outlast " << cmd->name << ": " << e.what() << "\n";
    return usage;
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    crypto::init();
    return dispatch(argc, argv);
  } catch (std::exception const& e) {
    std::cerr << "outlast: " << e.what() << "\n";
    return failed;
  }
}
