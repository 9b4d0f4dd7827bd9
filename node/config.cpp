#include "node/config.hpp"

#include <boost/algorithm/string/classification.hpp>
#include <boost/algorithm/string/split.hpp>
#include <boost/algorithm/string/trim.hpp>
#include <boost/program_options/parsers.hpp>
#include <boost/program_options/value_semantic.hpp>
#include <fstream>
#include <sstream>

#include "net/session.hpp"

namespace outlast::node {

namespace po = boost::program_options;

namespace {

// The single source of every option's name, default and meaning, for the file and for --help.
struct option_doc {
  char const* name;
  char const* file_default;  // as written in outlast.conf
  char const* help;
};

constexpr option_doc options_table[] = {
    {"listen", "0.0.0.0:6881,[::]:6881",
     "Addresses the swarm listens on (TCP and uTP), IP:PORT, comma-separated. Port 0 picks a free port."},
    {"gateway", "127.0.0.1:8088", "Address of the local web gateway, IP:PORT; 'off' for none."},
    {"gateway-public", "false",
     "Allow the gateway on a non-loopback address (everyone who can reach it can read every site this node holds)."},
    {"gateway-timeout", "30", "Seconds a client has to send its request before the gateway drops it."},
    {"gateway-threads", "0",
     "Threads serving the gateway; 0 picks one per four cores, at least one. More serve more clients at once, but on a "
     "machine with few cores they take CPU from the swarm and from the clients."},
    {"bootstrap", "dht.libtorrent.org:25401,router.bittorrent.com:6881,router.utorrent.com:6881,dht.transmissionbt.com:6881",
     "DHT routers to join through, HOST:PORT, comma-separated; 'none' for none (a private swarm)."},
    {"peer", "mirror.example.org:6881", "A known peer, HOST:PORT, tried for every swarm. Repeat the line for more."},
    {"upnp", "true", "Ask the router to forward the listen port (UPnP)."},
    {"natpmp", "true", "Ask the router to forward the listen port (NAT-PMP)."},
    {"lsd", "true", "Find peers on the local network (local service discovery)."},
    {"push", "true",
     "Pass signed pointers and notices to connected peers the moment they arrive (push); false leaves it to DHT polling."},
    {"local-swarm", "false",
     "Lift libtorrent's one-node-per-IP rules so many nodes on one machine find each other. For tests only."},
    {"log-level", "info", "Least severe log lines written: debug, info, warning or error."},
    {"poll-interval", "600", "Seconds between looks for newer versions of followed sites (varied by 20% so mirrors spread out)."},
    {"republish-interval", "2700", "Seconds between re-announcements of held signed pointers in the DHT (they expire after about 2 hours)."},
    {"resume-interval", "30", "Seconds between saves of download progress, so a killed node resumes where it was."},
    {"max-upload-rate", "0", "Upload limit in kB/s for the whole node; 0 for none."},
    {"max-download-rate", "0", "Download limit in kB/s for the whole node; 0 for none."},
    {"max-fetches", "8", "Versions downloaded at once; newer versions of more sites wait their turn (oldest first)."},
    {"keep-versions", "2", "Complete versions kept on disk (and seeded) per site; older ones are removed unless pinned."},
    {"max-site-size", "20000",
     "Largest version of a followed site this node fetches, in MB; 0 for no limit. `follow --max-size` sets it per site."},
    {"max-storage", "0", "Most disk the node's site versions may use, in MB; a new version that would exceed it is refused. 0 for no limit."},
};

constexpr int option_index(std::string_view name) {
  for (int i = 0; i < int(std::size(options_table)); ++i)
    if (std::string_view(options_table[i].name) == name) return i;
  return -1;
}
char const* help_of(std::string_view name) { return options_table[option_index(name)].help; }

std::vector<std::string> split_list(std::vector<std::string> const& values) {
  std::vector<std::string> out;
  for (auto const& v : values) {
    std::vector<std::string> parts;
    boost::split(parts, v, boost::is_any_of(", "), boost::token_compress_on);
    for (auto& p : parts) {
      boost::trim(p);
      if (!p.empty()) out.push_back(p);
    }
  }
  return out;
}

po::options_description file_options() {
  po::options_description d;
  d.add_options()
      ("listen", po::value<std::vector<std::string>>())
      ("gateway", po::value<std::string>())
      ("gateway-public", po::value<bool>())
      ("gateway-timeout", po::value<int>())
      ("gateway-threads", po::value<int>())
      ("bootstrap", po::value<std::vector<std::string>>())
      ("peer", po::value<std::vector<std::string>>())
      ("upnp", po::value<bool>())
      ("natpmp", po::value<bool>())
      ("lsd", po::value<bool>())
      ("push", po::value<bool>())
      ("local-swarm", po::value<bool>())
      ("log-level", po::value<std::string>())
      ("poll-interval", po::value<int>())
      ("republish-interval", po::value<int>())
      ("resume-interval", po::value<int>())
      ("max-upload-rate", po::value<int>())
      ("max-download-rate", po::value<int>())
      ("max-fetches", po::value<int>())
      ("keep-versions", po::value<int>())
      ("max-site-size", po::value<int>())
      ("max-storage", po::value<int>());
  return d;
}

}  // namespace

po::options_description node_command_options() {
  po::options_description d("Node options");
  d.add_options()
      ("listen", po::value<std::vector<std::string>>()->value_name("IP:PORT"), help_of("listen"))
      ("gateway", po::value<std::string>()->value_name("IP:PORT"), help_of("gateway"))
      ("gateway-public", po::bool_switch(), help_of("gateway-public"))
      ("gateway-timeout", po::value<int>()->value_name("SECONDS"), help_of("gateway-timeout"))
      ("gateway-threads", po::value<int>()->value_name("N"), help_of("gateway-threads"))
      ("bootstrap", po::value<std::vector<std::string>>()->value_name("HOST:PORT,..."), help_of("bootstrap"))
      ("peer", po::value<std::vector<std::string>>()->value_name("HOST:PORT"), help_of("peer"))
      ("no-upnp", po::bool_switch(), "Do not use UPnP.")
      ("no-natpmp", po::bool_switch(), "Do not use NAT-PMP.")
      ("no-lsd", po::bool_switch(), "Do not use local service discovery.")
      ("no-push", po::bool_switch(), "Do not push records to peers or take them from peers (DHT polling only).")
      ("local-swarm", po::bool_switch(), help_of("local-swarm"))
      ("log-level", po::value<std::string>()->value_name("LEVEL"), help_of("log-level"))
      ("poll-interval", po::value<int>()->value_name("SECONDS"), help_of("poll-interval"))
      ("republish-interval", po::value<int>()->value_name("SECONDS"), help_of("republish-interval"))
      ("resume-interval", po::value<int>()->value_name("SECONDS"), help_of("resume-interval"))
      ("max-upload-rate", po::value<int>()->value_name("KB/S"), help_of("max-upload-rate"))
      ("max-download-rate", po::value<int>()->value_name("KB/S"), help_of("max-download-rate"))
      ("max-fetches", po::value<int>()->value_name("N"), help_of("max-fetches"))
      ("keep-versions", po::value<int>()->value_name("N"), help_of("keep-versions"))
      ("max-site-size", po::value<int>()->value_name("MB"), help_of("max-site-size"))
      ("max-storage", po::value<int>()->value_name("MB"), help_of("max-storage"));
  return d;
}

std::string default_config_text() {
  std::ostringstream out;
  out << "# Outlast node configuration. Options given on the command line win over this file.\n"
         "# Every option is shown at its default, commented out: remove the '#' to change one.\n";
  for (auto const& o : options_table) out << "\n# " << o.help << "\n#" << o.name << " = " << o.file_default << "\n";
  return out.str();
}

result<node_config> load_node_config(std::filesystem::path const& home, po::variables_map const& cli) {
  node_config cfg;
  cfg.home = home;
  po::variables_map file;
  auto path = home / "outlast.conf";
  if (std::filesystem::exists(path)) {
    std::ifstream raw(path, std::ios::binary);
    if (!raw) return make_error(errc::io_error, "cannot read " + path.string());
    std::string text((std::istreambuf_iterator<char>(raw)), std::istreambuf_iterator<char>());
    if (text.size() > (1 << 20)) return make_error(errc::invalid_argument, path.string() + ": over 1 MiB; this is not a config file");
    // Boost.Program_options builds its error messages by replacing %placeholders% in a loop that
    // never ends when a value itself holds one (found by fuzz_config). No option of ours needs a
    // '%', so a line with one is refused before Boost sees it. Boost's only comment mark is '#',
    // anywhere on a line ("; %invalid_line%" is a line to Boost, not a comment, and hung it).
    std::istringstream lines(text);
    int number = 0;
    for (std::string line; std::getline(lines, line);) {
      ++number;
      if (line.substr(0, line.find('#')).find('%') != std::string::npos)
        return make_error(errc::invalid_argument, path.string() + ":" + std::to_string(number) + ": '%' has no place in outlast.conf");
    }
    std::istringstream in(text);
    try {
      po::store(po::parse_config_file(in, file_options(), false), file);
    } catch (po::error const& e) {
      return make_error(errc::invalid_argument, path.string() + ": " + e.what());
    }
  }
  auto pick = [&](char const* name) -> po::variable_value const* {
    if (cli.count(name) && !cli[name].defaulted()) return &cli[name];
    if (file.count(name)) return &file[name];
    return nullptr;
  };
  std::string where_listen = cli.count("listen") ? "--listen" : path.string() + ": listen";
  if (auto v = pick("listen")) cfg.listen = split_list(v->as<std::vector<std::string>>());
  if (auto v = pick("gateway")) cfg.gateway = v->as<std::string>();
  if (auto v = pick("bootstrap")) {
    cfg.bootstrap = split_list(v->as<std::vector<std::string>>());
    if (cfg.bootstrap.size() == 1 && cfg.bootstrap[0] == "none") cfg.bootstrap.clear();
  }
  // Peers from the file and the command line add up: both name known mirrors.
  if (file.count("peer")) cfg.peers = split_list(file["peer"].as<std::vector<std::string>>());
  if (cli.count("peer"))
    for (auto& p : split_list(cli["peer"].as<std::vector<std::string>>())) cfg.peers.push_back(p);
  auto flag = [&](char const* file_name, char const* negation, bool& out) {
    if (file.count(file_name)) out = file[file_name].as<bool>();
    if (cli.count(negation) && cli[negation].as<bool>()) out = false;
  };
  flag("upnp", "no-upnp", cfg.upnp);
  flag("natpmp", "no-natpmp", cfg.natpmp);
  flag("lsd", "no-lsd", cfg.lsd);
  flag("push", "no-push", cfg.push);
  if (file.count("local-swarm")) cfg.local_swarm = file["local-swarm"].as<bool>();
  if (cli.count("local-swarm") && cli["local-swarm"].as<bool>()) cfg.local_swarm = true;
  if (auto v = pick("log-level")) cfg.log_level = v->as<std::string>();
  struct int_option {
    char const* name;
    int& out;
    int min, max;
  };
  for (auto [name, out, min, max] : {int_option{"poll-interval", cfg.poll_interval_s, 1, 7 * 86400},
                                     int_option{"republish-interval", cfg.republish_interval_s, 1, 7200},
                                     int_option{"resume-interval", cfg.resume_interval_s, 1, 3600},
                                     int_option{"max-upload-rate", cfg.max_upload_kbps, 0, 2000000},
                                     int_option{"max-download-rate", cfg.max_download_kbps, 0, 2000000},
                                     int_option{"max-fetches", cfg.max_fetches, 1, 1000},
                                     int_option{"keep-versions", cfg.keep_versions, 1, 100},
                                     int_option{"max-site-size", cfg.max_site_mb, 0, 2000000000},
                                     int_option{"max-storage", cfg.max_storage_mb, 0, 2000000000},
                                     int_option{"gateway-timeout", cfg.gateway_timeout_s, 1, 3600},
                                     int_option{"gateway-threads", cfg.gateway_threads, 0, 64}}) {
    if (auto v = pick(name)) out = v->as<int>();
    if (out < min || out > max)
      return make_error(errc::invalid_argument, std::string(name) + " must be between " + std::to_string(min) + " and " +
                                                    std::to_string(max) + ", not " + std::to_string(out));
  }

  if (cfg.listen.empty()) return make_error(errc::invalid_argument, where_listen + ": at least one address is needed");
  for (auto const& l : cfg.listen)
    if (auto ok = net::validate_endpoint(l, true); !ok) return make_error(errc::invalid_argument, "listen: " + ok.err().message);
  if (file.count("gateway-public")) cfg.gateway_public = file["gateway-public"].as<bool>();
  if (cli.count("gateway-public") && cli["gateway-public"].as<bool>()) cfg.gateway_public = true;
  if (cfg.gateway != "off") {
    if (auto ok = net::validate_endpoint(cfg.gateway, true); !ok)
      return make_error(errc::invalid_argument, "gateway: " + ok.err().message);
    auto host = cfg.gateway.substr(0, cfg.gateway.rfind(':'));
    bool loopback = host.rfind("127.", 0) == 0 || host == "[::1]";
    if (!loopback && !cfg.gateway_public)
      return make_error(errc::invalid_argument, "gateway: " + cfg.gateway +
                                                    " is not a loopback address; anyone who reaches it can read every site here. "
                                                    "Add --gateway-public (or gateway-public = true) if that is what you want");
  }
  for (auto const& b : cfg.bootstrap)
    if (auto ok = net::validate_endpoint(b, false); !ok) return make_error(errc::invalid_argument, "bootstrap: " + ok.err().message);
  for (auto const& p : cfg.peers)
    if (auto ok = net::validate_endpoint(p, false); !ok) return make_error(errc::invalid_argument, "peer: " + ok.err().message);
  if (cfg.log_level != "debug" && cfg.log_level != "info" && cfg.log_level != "warning" && cfg.log_level != "error")
    return make_error(errc::invalid_argument, "log-level must be debug, info, warning or error, not '" + cfg.log_level + "'");
  return cfg;
}

}  // namespace outlast::node
