// Node configuration: one table of options shared by the command line (`outlast node ...`) and
// the config file (<home>/outlast.conf, INI). Command-line values win over the file's.
#pragma once

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/variables_map.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "crypto/result.hpp"

namespace outlast::node {

struct node_config {
  std::filesystem::path home;
  std::vector<std::string> listen{"0.0.0.0:6881", "[::]:6881"};
  std::string gateway = "127.0.0.1:8088";
  std::vector<std::string> bootstrap{"dht.libtorrent.org:25401", "router.bittorrent.com:6881",
                                     "router.utorrent.com:6881", "dht.transmissionbt.com:6881"};
  std::vector<std::string> peers;
  bool upnp = true;
  bool natpmp = true;
  bool lsd = true;
  bool push = true;  // records over peer connections (net/push.hpp)
  bool local_swarm = false;
  std::string log_level = "info";
  int poll_interval_s = 600;        // look for newer versions of followed sites (±20% jitter)
  int republish_interval_s = 2700;  // re-put held pointers in the DHT (items expire after ~2 h)
  int resume_interval_s = 30;       // save download progress
  int max_upload_kbps = 0;          // kB/s, 0: unlimited
  int max_download_kbps = 0;
  int max_fetches = 8;        // versions downloaded at once; more wait their turn
  int keep_versions = 2;      // complete versions kept per site (pinned ones come on top)
  int max_site_mb = 20000;    // largest followed version fetched, MB; 0: no limit
  int max_storage_mb = 0;     // all site versions together, MB; 0: no limit
  bool gateway_public = false;  // a non-loopback gateway address needs this
  int gateway_timeout_s = 30;   // a client must send its request within this
  int gateway_threads = 0;      // 0: one per four cores, at least one
};

// Options accepted by `outlast node` on the command line.
boost::program_options::options_description node_command_options();

// The text `outlast init` writes: every option, commented out at its default, with its meaning.
std::string default_config_text();

// Reads <home>/outlast.conf if it exists and merges it under the command line's values.
// Errors: invalid_argument naming the file, line or option at fault.
result<node_config> load_node_config(std::filesystem::path const& home,
                                     boost::program_options::variables_map const& command_line);

}  // namespace outlast::node
