// main() of every perf/ binary: see bench_main.h. Flags beyond Google Benchmark's:
//   --qh_noise=F      stop sampling a benchmark once its relative noise is below F (default 0.01)
//   --qh_budget_s=S   or once S seconds of sampling are spent (default 1)
#include "perf/bench_main.h"

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "impl/cli/environment.h"
#include "impl/core/atomic_file.h"
#include "perf/policy.h"

namespace qh::perf {

namespace {

ContextHooks& hooks() {
  static ContextHooks h;
  return h;
}

using nlohmann::ordered_json;

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

// Google Benchmark's JSON plus context.qharness; the samples of each measurement go under the benchmark's name and
// its sample_id counter is dropped. Benchmarks whose figures exceed a probed limit are listed as measurement errors.
ordered_json augment(ordered_json doc, ordered_json qh, const ordered_json& samples) {
  ordered_json by_name = ordered_json::object(), flagged = ordered_json::array();
  for (auto& b : doc["benchmarks"]) {
    if (b.contains("sample_id")) {
      const auto id = b["sample_id"].get<std::size_t>();
      if (samples.is_array() && id < samples.size()) by_name[b["name"].get<std::string>()] = samples[id];
      b.erase("sample_id");
    }
    if (b.value("measurement_error", 0.0) != 0.0) flagged.push_back(b["name"]);
  }
  qh["samples"] = by_name;
  qh["measurement_errors"] = flagged;
  doc["context"]["qharness"] = qh;
  return doc;
}

}  // namespace

bool set_context_hooks(ContextHooks h) {
  hooks() = h;
  return true;
}

Policy& default_policy() {
  static Policy p;
  return p;
}

}  // namespace qh::perf

int main(int argc, char** argv) {
  using qh::perf::default_policy;
  std::vector<char*> args;
  std::string out_path, partial_path, value;
  for (int i = 0; i < argc; ++i) {
    if (qh::perf::take_flag(argv[i], "--qh_noise", &value)) {
      default_policy().target_noise = qh::perf::positive_number(value, "--qh_noise");
    } else if (qh::perf::take_flag(argv[i], "--qh_budget_s", &value)) {
      default_policy().budget_s = qh::perf::positive_number(value, "--qh_budget_s");
    } else if (qh::perf::take_flag(argv[i], "--benchmark_out_format", &value) && value != "json") {
      std::fprintf(stderr, "qharness bench: only --benchmark_out_format=json is supported (the context.qharness block)\n");
      return 2;
    } else if (qh::perf::take_flag(argv[i], "--benchmark_out", &value)) {
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
                              {"l2_flush", "cudaMemsetAsync of 2 x L2 before every sample"}}}};
  try {
    if (qh::perf::hooks().before) qh.update(qh::perf::hooks().before());
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
    const auto samples = qh::perf::hooks().after ? qh::perf::hooks().after() : nlohmann::ordered_json::array();
    const auto full = qh::perf::augment(doc, qh, samples);
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
