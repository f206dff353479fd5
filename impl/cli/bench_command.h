// `qharness bench` and the benchmark part of `qharness run`: runs the perf/ binaries next to `qharness`, each with
// --benchmark_out (Google Benchmark JSON + context.qharness, docs/benchmarks.md), and merges their entries for
// results.json: each entry gains `binary` and `samples` (the per-sample seconds from context.qharness.samples)
// and its name loses Google Benchmark's "/iterations:1/manual_time" (run_name keeps the original);
// the probes come from the first binary that measured them.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace qh::cli {

struct BenchOptions {
  std::string out_dir = "reports/out";  // JSON and console logs go to OUT/bench/
  std::string set = "quick";            // quick (a representative subset, about a minute on an H100) | full
  std::string filter;                   // a Google Benchmark regex; replaces the set's filters
  bool cpu_only = false;                // skip the binaries that time on a GPU (qharness run --device cpu)
};

struct BenchResults {
  nlohmann::ordered_json benchmarks = nlohmann::ordered_json::array();
  nlohmann::ordered_json probes;  // null when no binary probed a GPU
  nlohmann::ordered_json failures = nlohmann::ordered_json::array();  // {binary, exit_code, console_tail}
};

// Throws ConfigError for an unknown set, IoError when OUT/bench cannot be created.
BenchResults run_benchmarks(const BenchOptions& options, const std::string& bin_dir);

// `qharness bench`: runs them and writes OUT/bench/results.json (the results.json schema with benchmarks and
// probes filled). Returns 0, or 1 when a binary failed or a measurement was flagged.
int bench_command(const BenchOptions& options, const std::string& bin_dir);

}  // namespace qh::cli
