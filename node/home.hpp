// The node's home directory: where it is, what `outlast init` puts there, and the lock that
// keeps a second node off it.
//
//   <home>/outlast.conf   configuration (INI)
//   <home>/keys/NAME.key  secret keys, mode 0600
//   <home>/store/         the LMDB store
//   <home>/node.lock      held by the running node (flock), holds its pid
//   <home>/control.sock   the control API, mode 0600
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "crypto/result.hpp"

namespace outlast::node {

// --home, else $OUTLAST_HOME, else $XDG_DATA_HOME/outlast, else ~/.local/share/outlast.
// Errors: invalid_argument when none of these can be determined.
result<std::filesystem::path> resolve_home(std::optional<std::string> const& flag);

inline std::filesystem::path control_socket_path(std::filesystem::path const& home) { return home / "control.sock"; }

struct init_report {
  bool created_home = false;
  bool created_config = false;
  std::optional<std::string> created_key;  // the default key's public text, if made now
};

// Creates what is missing and leaves what exists alone: idempotent.
// Errors: io_error.
result<init_report> init_home(std::filesystem::path const& home);

// Exclusive lock on the home for one node process, released when destroyed or when the process
// dies (flock), so a killed node never leaves a stale lock.
class home_lock {
 public:
  // Errors: busy (another node holds it; the message names its pid), io_error.
  static result<home_lock> acquire(std::filesystem::path const& home);
  home_lock(home_lock&& o) noexcept : m_fd(o.m_fd) { o.m_fd = -1; }
  home_lock& operator=(home_lock&&) = delete;
  ~home_lock();

 private:
  explicit home_lock(int fd) : m_fd(fd) {}
  int m_fd = -1;
};

}  // namespace outlast::node
