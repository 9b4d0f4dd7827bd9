// One row of the table `make bench` prints at the end (bench/bench_summary.cpp): each benchmark
// appends its rows to bench/results/summary.jsonl, tagged with the run (BENCH_RUN, set by
// `make bench`; the start time otherwise).
#pragma once

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace outlast::bench {

inline std::string run_id() {
  static std::string const id = [] {
    if (char const* v = std::getenv("BENCH_RUN"); v && *v) return std::string(v);
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  }();
  return id;
}

// `higher_is_better`: throughput (ratio = ours / reference) or time and bytes (reference / ours
// is printed as the ratio, so above 1 always means Outlast does better). `reference` 0: none.
inline void summary_row(std::string const& bench, std::string const& workload, double ours, double reference,
                        std::string const& unit, std::string const& reference_name, bool higher_is_better, std::string const& target = "") {
  double ratio = 0;
  if (reference > 0 && ours > 0) ratio = higher_is_better ? ours / reference : reference / ours;
  std::filesystem::create_directories("bench/results");
  std::ofstream("bench/results/summary.jsonl", std::ios::app)
      << nlohmann::json{{"run", run_id()},       {"bench", bench},         {"workload", workload},
                        {"outlast", ours},       {"reference", reference}, {"unit", unit},
                        {"reference_name", reference_name}, {"ratio", ratio}, {"target", target}}
             .dump()
      << "\n";
}

}  // namespace outlast::bench
