#include "tests/support/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace outlast::test {

namespace {
std::string slurp(std::filesystem::path const& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
std::atomic<int> counter{0};
}  // namespace

process::process(std::vector<std::string> args, std::filesystem::path const& capture_dir) {
  int n = counter++;
  m_out = capture_dir / ("p" + std::to_string(n) + ".out");
  m_err = capture_dir / ("p" + std::to_string(n) + ".err");
  int out_fd = ::open(m_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err_fd = ::open(m_err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out_fd < 0 || err_fd < 0) throw std::runtime_error("cannot create capture files");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  m_pid = ::fork();
  if (m_pid < 0) throw std::runtime_error("fork failed");
  if (m_pid == 0) {
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::setsid();  // no controlling terminal: passphrase prompts must not block a test
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out_fd);
  ::close(err_fd);
}

process::~process() {
  if (running()) {
    ::kill(m_pid, SIGKILL);
    ::waitpid(m_pid, nullptr, 0);
  }
}

void process::signal(int sig) const { ::kill(m_pid, sig); }

bool process::running() {
  if (m_code) return false;
  int status = 0;
  pid_t r = ::waitpid(m_pid, &status, WNOHANG);
  if (r == m_pid) {
    m_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

std::optional<int> process::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return m_code;
}

std::string process::out() const { return slurp(m_out); }
std::string process::err() const { return slurp(m_err); }

run_result run(std::vector<std::string> args, std::filesystem::path const& capture_dir, std::chrono::milliseconds timeout) {
  process p(std::move(args), capture_dir);
  auto code = p.wait(timeout);
  if (!code) throw std::runtime_error("command did not finish in time");
  return {*code, p.out(), p.err()};
}

}  // namespace outlast::test
