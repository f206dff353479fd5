// main() of every perf/ binary: Google Benchmark plus the context.qharness block (perf/bench_context.h), written
// atomically (--benchmark_out=PATH, json only: Google Benchmark writes a partial file that replaces PATH at the
// end). Flags beyond Google Benchmark's:
//   --qh_noise=F      stop sampling a benchmark once its relative noise is below F (default 0.01)
//   --qh_budget_s=S   or once S seconds of sampling are spent (default 1)
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "impl/cli/environment.h"
#include "impl/core/atomic_file.h"
#include "perf/bench_context.h"
#include "perf/measure.h"
#include "perf/policy.h"

namespace {

bool take_flag(const char* arg, const char* name, std::string* value) {
  const std::size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

double positive_number(const std::string& text, const char* flag) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v > 0)) {
    std::fprintf(stderr, "qharness bench: %s takes a positive number, got '%s'\n", flag, text.c_str());
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  using qh::perf::default_policy;
  std::vector<char*> args;
  std::string out_path, partial_path, value;
  for (int i = 0; i < argc; ++i) {
    if (take_flag(argv[i], "--qh_noise", &value)) {
      default_policy().target_noise = positive_number(value, "--qh_noise");
    } else if (take_flag(argv[i], "--qh_budget_s", &value)) {
      default_policy().budget_s = positive_number(value, "--qh_budget_s");
    } else if (take_flag(argv[i], "--benchmark_out_format", &value) && value != "json") {
      std::fprintf(stderr, "qharness bench: only --benchmark_out_format=json is supported (the context.qharness block)\n");
      return 2;
    } else if (take_flag(argv[i], "--benchmark_out", &value)) {
      // Google Benchmark writes a partial file; the complete one replaces the destination only at the end.
      out_path = value;
      partial_path = out_path + ".partial-" + std::to_string(::getpid());
      static std::string arg;
      arg = "--benchmark_out=" + partial_path;
      args.push_back(arg.data());
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = int(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;

  nlohmann::ordered_json qh{{"schema_version", 1},
                            {"tool", qh::cli::tool_block()},
                            {"environment", qh::cli::environment_block()},
                            {"policy",
                             {{"target_noise", default_policy().target_noise},
                              {"budget_s", default_policy().budget_s},
                              {"min_samples", default_policy().min_samples},
                              {"throttle_fraction", default_policy().throttle_fraction},
                              {"l2_flush", qh::perf::kL2Flush}}}};
  try {
    if (qh::perf::context_hooks().before) qh.update(qh::perf::context_hooks().before());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qharness bench: stopped before the benchmarks: %s\n", e.what());
    return 2;
  }
  const std::size_t ran = benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (ran == 0) {  // the filter matched none of this binary's benchmarks: nothing to write
    std::remove(partial_path.c_str());
    return 0;
  }
  if (out_path.empty()) return 0;

  try {
    std::ifstream in(partial_path);
    if (!in) throw std::runtime_error("Google Benchmark wrote no JSON to " + partial_path);
    const auto doc = nlohmann::ordered_json::parse(in);
    const auto samples = qh::perf::context_hooks().after ? qh::perf::context_hooks().after() : nlohmann::ordered_json::array();
    const auto full = qh::perf::with_qharness_context(doc, qh, samples);
    qh::write_file_atomically(out_path, full.dump(2) + "\n");
    std::remove(partial_path.c_str());
    for (const auto& name : full["context"]["qharness"]["measurement_errors"]) {
      std::fprintf(stderr, "qharness bench: MEASUREMENT ERROR in %s: a figure exceeds the probed limit (L2 not "
                           "flushed, or a timing error); it is not a result\n", name.get<std::string>().c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qharness bench: could not write %s: %s\n", out_path.c_str(), e.what());
    return 1;
  }
  return 0;
}
