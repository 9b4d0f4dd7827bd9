#include "tests/support/swarm.hpp"

#include <signal.h>

#include <catch2/catch.hpp>

#include "tests/support/wait.hpp"

namespace outlast::test {

using json = nlohmann::json;
using namespace std::chrono_literals;

swarm_node::swarm_node(std::string name, std::filesystem::path const& base, std::vector<std::string> extra_flags)
    : m_name(std::move(name)), m_base(base), m_home(base / m_name), m_flags(std::move(extra_flags)) {}

swarm_node::~swarm_node() = default;  // a running process is SIGKILLed by its owner

void swarm_node::start(std::vector<std::string> const& bootstrap, std::vector<std::string> flags) {
  std::string boot;
  for (auto const& b : bootstrap) boot += (boot.empty() ? "" : ",") + b;
  std::vector<std::string> args = {OUTLAST_BINARY, "--home", m_home.string(), "node",
                                   "--listen", "127.0.0.1:" + std::to_string(m_port),
                                   "--bootstrap", boot.empty() ? "none" : boot,
                                   "--local-swarm", "--no-upnp", "--no-natpmp", "--no-lsd", "--gateway", "127.0.0.1:0"};
  args.insert(args.end(), m_flags.begin(), m_flags.end());
  args.insert(args.end(), flags.begin(), flags.end());
  m_proc = std::make_unique<process>(args, m_base);
  json status;
  bool up = wait_until([&] {
    if (!m_proc->running()) return true;
    auto r = cli({"status", "--json"});
    if (r.code != 0) return false;
    status = json::parse(r.out);
    return !status["listen"].empty() && status["dht_running"].get<bool>();
  }, 20s);
  INFO(m_name << " log:\n" << m_proc->err());
  REQUIRE(up);
  REQUIRE(m_proc->running());
  m_endpoint = status["listen"][0].get<std::string>();
  m_port = std::stoi(m_endpoint.substr(m_endpoint.rfind(':') + 1));
}

void swarm_node::stop() {
  if (!m_proc || !m_proc->running()) return;
  m_proc->signal(SIGTERM);
  auto code = m_proc->wait(20s);
  INFO(m_name << " log:\n" << m_proc->err());
  REQUIRE(code);
  CHECK(*code == 0);
}

void swarm_node::kill() {
  if (!m_proc) return;
  m_proc->signal(SIGKILL);
  REQUIRE(m_proc->wait(10s));
}

bool swarm_node::running() { return m_proc && m_proc->running(); }

run_result swarm_node::cli(std::vector<std::string> args) const {
  args.insert(args.begin(), {OUTLAST_BINARY, "--home", m_home.string()});
  return run(args, m_base, 120s);
}

json swarm_node::cli_json(std::vector<std::string> args) const {
  args.push_back("--json");
  auto r = cli(args);
  INFO(m_name << ": outlast " << args[0] << " failed: " << r.err);
  REQUIRE(r.code == 0);
  return json::parse(r.out);
}

json swarm_node::site(std::string const& address) const {
  for (auto const& s : cli_json({"sites"}))
    if (s["address"] == address) return s;
  return nullptr;
}

std::string swarm_node::log() const { return m_proc ? m_proc->err() : ""; }

}  // namespace outlast::test
