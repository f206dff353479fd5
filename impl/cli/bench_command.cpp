#include "impl/cli/bench_command.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "impl/cli/environment.h"
#include "impl/cli/suites.h"
#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"
#include "impl/core/progress.h"

namespace qh::cli {

namespace {

using nlohmann::ordered_json;

struct BenchBinary {
  const char* name;
  const char* quick_filter;  // Google Benchmark regex of the quick set
  bool gpu;                  // its quick cases time on a GPU (they skip without one)
};

// Every perf/ binary; the GPU ones exist only in CUDA builds. The quick set keeps one case per family at the
// shapes the speed issues quote.
const BenchBinary kBinaries[] = {
    {"qh_format_bench", "safetensors/parse_header/tensors:1024$|gptq/(pack|unpack)/bits:4/", false},
    {"qh_quant_linear_bench",
     "(marlin/gemm/M:(1|16|256)/K:(4096/N:4096|8192/N:28672)/group:128|cublas/gemm/M:(1|16|256)/K:(4096/N:4096|"
     "8192/N:28672))/bf16:0|gptq/dequant/bits:4/K:4096/N:4096|"
     "marlin/repack/K:8192/N:28672/act:0",
     true},
    {"qh_gptq_bench", "gptq/optimized/out:4096/in:4096/act_order:0|gptq/hessian/in:4096/fp64:0", true},
};

std::string tail_of(const std::string& path, std::size_t max_chars) {
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.size() > max_chars ? text.substr(text.size() - max_chars) : text;
}

// family/variant/axes: Google Benchmark's "/iterations:1/manual_time" suffixes say how it timed, not what ran.
std::string display_name(std::string name) {
  for (const std::string suffix : {"/manual_time", "/iterations:1"}) {
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      name.resize(name.size() - suffix.size());
    }
  }
  return name;
}

}  // namespace

BenchResults run_benchmarks(const BenchOptions& options, const std::string& bin_dir) {
  if (options.set != "quick" && options.set != "full") {
    throw ConfigError(Where{}, "--set takes quick or full", "quick | full", "'" + options.set + "'");
  }
  namespace fs = std::filesystem;
  const std::string dir = options.out_dir + "/bench";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(Where{.file = dir}, "cannot create the benchmark output directory", "a writable path", ec.message());

  std::vector<const BenchBinary*> present;
  for (const auto& b : kBinaries) {
    if (fs::exists(bin_dir + "/" + b.name) && !(options.cpu_only && b.gpu)) present.push_back(&b);
  }
  BenchResults out;
  Progress progress("bench", present.size());
  for (const BenchBinary* b : present) {
    const std::string json_path = dir + "/" + b->name + ".json", log_path = dir + "/" + b->name + ".log";
    std::vector<std::string> args = {bin_dir + "/" + b->name, "--benchmark_out=" + json_path,
                                     "--benchmark_out_format=json"};
    const std::string filter = !options.filter.empty() ? options.filter : options.set == "quick" ? b->quick_filter : "";
    if (!filter.empty()) args.push_back("--benchmark_filter=" + filter);
    std::remove(json_path.c_str());
    const int rc = run_process(args, log_path, {});
    progress.step(std::string(b->name) + " (exit " + std::to_string(rc) + ")");
    std::ifstream in(json_path);
    if (rc == 0 && !in) continue;  // the filter matched none of its benchmarks
    if (rc != 0 || !in) {
      out.failures.push_back({{"binary", b->name}, {"exit_code", rc}, {"console_tail", tail_of(log_path, 2000)}});
      if (!in) continue;
    }
    ordered_json doc;
    try {
      doc = ordered_json::parse(in);
    } catch (const std::exception& e) {
      out.failures.push_back({{"binary", b->name}, {"exit_code", rc}, {"console_tail", std::string("unreadable JSON: ") + e.what()}});
      continue;
    }
    const ordered_json& ctx = doc["context"]["qharness"];
    if (out.probes.is_null() && ctx.contains("probes")) out.probes = ctx["probes"];
    for (auto entry : doc["benchmarks"]) {
      if (entry.value("error_occurred", false)) continue;  // skipped (no GPU): nothing was measured
      entry["binary"] = b->name;
      const std::string name = entry["name"];
      if (ctx.contains("samples") && ctx["samples"].contains(name)) entry["samples"] = ctx["samples"][name];
      entry["name"] = display_name(name);
      out.benchmarks.push_back(std::move(entry));
    }
  }
  return out;
}

int bench_command(const BenchOptions& options, const std::string& bin_dir) {
  const BenchResults r = run_benchmarks(options, bin_dir);
  const ordered_json results = {{"schema_version", 1},          {"tool", tool_block()},
                                {"environment", environment_block()}, {"benchmarks", r.benchmarks},
                                {"probes", r.probes},              {"benchmark_failures", r.failures}};
  const std::string path = options.out_dir + "/bench/results.json";
  write_file_atomically(path, results.dump(2) + "\n");
  int flagged = 0;
  for (const auto& b : r.benchmarks) flagged += b.value("measurement_error", 0.0) != 0.0;
  std::printf("qharness bench: %zu benchmarks, %d flagged as measurement errors, %zu binaries failed -> %s\n",
              r.benchmarks.size(), flagged, r.failures.size(), path.c_str());
  for (const auto& f : r.failures) {
    std::printf("  %s exited %d:\n%s\n", f["binary"].get<std::string>().c_str(), f["exit_code"].get<int>(),
                f["console_tail"].get<std::string>().c_str());
  }
  return flagged == 0 && r.failures.empty() ? 0 : 1;
}

}  // namespace qh::cli
