// Nodes of a test swarm: real `outlast node` processes on 127.0.0.1, each in its own home,
// driven through the real CLI. Public DHT routers, UPnP, NAT-PMP and LSD are always off.
#pragma once

#include <nlohmann/json.hpp>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace outlast::test {

class swarm_node {
 public:
  swarm_node(std::string name, std::filesystem::path const& base, std::vector<std::string> extra_flags = {});
  ~swarm_node();

  // Starts `outlast node` bootstrapped to `bootstrap` (HOST:PORT entries; empty: none) and
  // waits until it answers with a listen address. Flags given at construction are added.
  void start(std::vector<std::string> const& bootstrap, std::vector<std::string> flags = {});
  void stop();  // SIGTERM, waits for a clean exit (checked)
  void kill();  // SIGKILL
  bool running();

  run_result cli(std::vector<std::string> args) const;  // `outlast --home HOME args...`
  nlohmann::json cli_json(std::vector<std::string> args) const;  // with --json; checks exit 0
  nlohmann::json site(std::string const& address) const;  // this node's `sites` entry, or null

  std::string const& name() const { return m_name; }
  std::filesystem::path const& home() const { return m_home; }
  std::string const& endpoint() const { return m_endpoint; }  // 127.0.0.1:PORT of the running node
  std::string log() const;  // stderr of the current (or last) run

 private:
  std::string m_name;
  std::filesystem::path m_base, m_home;
  std::vector<std::string> m_flags;
  std::unique_ptr<process> m_proc;
  std::string m_endpoint;
  int m_port = 0;  // kept across restarts so that others' bootstrap entries stay valid
};

}  // namespace outlast::test
