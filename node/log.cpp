#include "node/log.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace outlast::node {

log_level parse_log_level(std::string_view s) {
  if (s == "debug") return log_level::debug;
  if (s == "warning") return log_level::warning;
  if (s == "error") return log_level::error;
  return log_level::info;
}

logger::logger(log_level min) : m_min(min), m_journal(std::getenv("JOURNAL_STREAM") != nullptr) {}

void logger::write(log_level l, std::string_view component, std::string_view message) {
  if (l < m_min) return;
  static constexpr char const* names[] = {"debug", "info", "warning", "error"};
  static constexpr char const* priorities[] = {"<7>", "<6>", "<4>", "<3>"};
  auto idx = static_cast<int>(l);
  std::string line;
  if (m_journal) {
    line = priorities[idx];
  } else {
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[64];
    std::snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    line = stamp;
  }
  line += names[idx];
  line += ' ';
  line += component;
  line += ": ";
  for (char c : message) line += (c == '\n' || c == '\r') ? ' ' : c;  // one event, one line
  line += '\n';
  std::lock_guard lock(m_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace outlast::node
