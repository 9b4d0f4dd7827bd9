// bench_summary: the table at the end of `make bench`. Reads bench/results/summary.jsonl and
// prints the rows of one run (BENCH_RUN, or the newest run in the file), every workload beside
// its reference. Ratio: above 1 means Outlast does better (throughput ours / reference; time,
// bytes and memory reference / ours).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

int main() {
  std::ifstream in("bench/results/summary.jsonl");
  if (!in) {
    std::fprintf(stderr, "bench_summary: no bench/results/summary.jsonl (run make bench)\n");
    return 1;
  }
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) rows.push_back(std::move(j));
  }
  std::string run;
  if (char const* v = std::getenv("BENCH_RUN"); v && *v) run = v;
  else if (!rows.empty()) run = rows.back().value("run", "");
  std::printf("\nSummary of bench run %s (ratio above 1: Outlast better)\n", run.c_str());
  std::printf("%-14s %-44s %14s %14s %-22s %7s  %s\n", "bench", "workload", "outlast", "reference", "(reference)", "ratio", "target");
  int n = 0;
  for (auto const& r : rows) {
    if (r.value("run", "") != run) continue;
    ++n;
    auto unit = r.value("unit", "");
    auto fmt = [&](double v) {
      char buf[64];
      if (v == 0) return std::string("-");
      std::snprintf(buf, sizeof buf, v >= 100 ? "%.0f %s" : "%.2f %s", v, unit.c_str());
      return std::string(buf);
    };
    double ratio = r.value("ratio", 0.0);
    char ratio_text[32] = "-";
    if (ratio > 0) std::snprintf(ratio_text, sizeof ratio_text, "%.2f", ratio);
    std::printf("%-14s %-44s %14s %14s %-22s %7s  %s\n", r.value("bench", "").c_str(), r.value("workload", "").c_str(),
                fmt(r.value("outlast", 0.0)).c_str(), fmt(r.value("reference", 0.0)).c_str(), r.value("reference_name", "").c_str(),
                ratio_text, r.value("target", "").c_str());
  }
  if (n == 0) std::printf("(no rows for this run)\n");
  return 0;
}
