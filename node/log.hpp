// One line per event on stderr, journald-friendly: under systemd (JOURNAL_STREAM set) each line
// starts with a syslog priority prefix (<3>, <4>, <6>, <7>) and no timestamp, since journald
// adds its own; elsewhere with an ISO-8601 UTC timestamp. Any thread.
#pragma once

#include <mutex>
#include <string>
#include <string_view>

namespace outlast::node {

enum class log_level { debug, info, warning, error };
log_level parse_log_level(std::string_view s);  // unknown -> info

class logger {
 public:
  explicit logger(log_level min = log_level::info);
  void set_level(log_level l) { m_min = l; }
  void write(log_level l, std::string_view component, std::string_view message);
  void debug(std::string_view component, std::string_view message) { write(log_level::debug, component, message); }
  void info(std::string_view component, std::string_view message) { write(log_level::info, component, message); }
  void warn(std::string_view component, std::string_view message) { write(log_level::warning, component, message); }
  void error(std::string_view component, std::string_view message) { write(log_level::error, component, message); }

 private:
  log_level m_min;
  bool m_journal;
  std::mutex m_mutex;
};

}  // namespace outlast::node
