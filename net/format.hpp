// Numbers for people: byte counts and ages, as the CLI and the dashboard show them.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace outlast::net {

inline std::string human_bytes(double b) {
  char const* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

inline std::string human_age(std::int64_t s) {
  if (s < 120) return std::to_string(s) + " s";
  if (s < 7200) return std::to_string(s / 60) + " min";
  if (s < 172800) return std::to_string(s / 3600) + " h";
  return std::to_string(s / 86400) + " days";
}

}  // namespace outlast::net
