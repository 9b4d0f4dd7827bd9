#include "node/home.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "crypto/key_file.hpp"
#include "node/config.hpp"
#include "node/keyring.hpp"

namespace outlast::node {

namespace fs = std::filesystem;

result<fs::path> resolve_home(std::optional<std::string> const& flag) {
  auto absolute = [](fs::path p) -> result<fs::path> {
    std::error_code ec;
    auto a = fs::absolute(p, ec);
    if (ec) return make_error(errc::invalid_argument, "cannot resolve home " + p.string() + ": " + ec.message());
    return a.lexically_normal();
  };
  if (flag) {
    if (flag->empty()) return make_error(errc::invalid_argument, "--home is empty");
    return absolute(*flag);
  }
  if (char const* env = std::getenv("OUTLAST_HOME"); env && *env) return absolute(env);
  if (char const* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) return absolute(fs::path(xdg) / "outlast");
  if (char const* home = std::getenv("HOME"); home && *home) return absolute(fs::path(home) / ".local/share/outlast");
  return make_error(errc::invalid_argument, "cannot tell where the home is: set --home, OUTLAST_HOME or HOME");
}

result<init_report> init_home(fs::path const& home) {
  init_report report;
  std::error_code ec;
  report.created_home = !fs::exists(home / "outlast.conf", ec) && !fs::exists(home / "keys", ec);
  fs::create_directories(home, ec);
  if (ec) return make_error(errc::io_error, "cannot create " + home.string() + ": " + ec.message());
  ::chmod(home.c_str(), 0700);
  auto conf = home / "outlast.conf";
  if (!fs::exists(conf)) {
    auto st = crypto::write_private_file(conf, default_config_text(), false);
    if (!st && st.err().code != errc::already_exists) return st.err();
    report.created_config = st.ok();
  }
  keyring keys(home);
  auto existing = keys.find("default");
  if (!existing) {
    if (existing.err().code != errc::not_found) return existing.err();
    auto made = keys.create("default", std::nullopt);
    if (!made && made.err().code != errc::already_exists) return made.err();
    if (made) report.created_key = made->key.to_text();
  }
  return report;
}

result<home_lock> home_lock::acquire(fs::path const& home) {
  auto path = home / "node.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(errc::io_error, "cannot open " + path.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      return make_error(errc::busy, "another outlast node (pid " + pid + ") is already running on " + home.string());
    }
    return make_error(errc::io_error, "cannot lock " + path.string() + ": " + std::strerror(err));
  }
  auto pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid is only informative; the lock is what counts.
  }
  return home_lock(fd);
}

home_lock::~home_lock() {
  if (m_fd >= 0) ::close(m_fd);
}

}  // namespace outlast::node
