// Runs the real `outlast` binary (or any program) as a user would, with its output captured to
// files, and waits for it with deadlines. A process still running at destruction is SIGKILLed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace outlast::test {

struct run_result {
  int code = -1;  // exit code, or 128 + signal number
  std::string out, err;
};

class process {
 public:
  // `args[0]` is the program path. Output goes to files in `capture_dir`.
  process(std::vector<std::string> args, std::filesystem::path const& capture_dir);
  ~process();
  process(process const&) = delete;
  process& operator=(process const&) = delete;

  pid_t pid() const { return m_pid; }
  void signal(int sig) const;
  // The exit code (or 128 + signal) once the process ended within `timeout`; nullopt otherwise.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  std::string out() const;
  std::string err() const;

 private:
  pid_t m_pid = -1;
  std::optional<int> m_code;
  std::filesystem::path m_out, m_err;
};

// Runs to completion within `timeout` (fails the test otherwise).
run_result run(std::vector<std::string> args, std::filesystem::path const& capture_dir,
               std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace outlast::test
