#include "impl/cli/run_command.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include "impl/cli/bench_command.h"
#include "impl/cli/checkpoint_fixtures.h"
#include "impl/cli/environment.h"
#include "impl/cli/gptq_fixtures.h"
#include "impl/cli/report_command.h"
#include "impl/cli/suites.h"
#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"
#include "impl/core/progress.h"

namespace qh::cli {

namespace {

using nlohmann::ordered_json;

ordered_json summarize(const ordered_json& checks) {
  std::map<std::string, int> counts{{"pass", 0}, {"fail", 0}, {"skip", 0}, {"error", 0}};
  for (const auto& c : checks) ++counts[c["status"].get<std::string>()];
  return ordered_json(counts);
}

}  // namespace

int run_command(const RunOptions& options, const std::string& bin_dir) {
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda") {
    throw ConfigError(Where{}, "--device takes auto, cpu or cuda", "auto | cpu | cuda", "'" + options.device + "'");
  }
  if (options.bench != "auto" && options.bench != "none" && options.bench != "quick" && options.bench != "full") {
    throw ConfigError(Where{}, "--bench takes auto, none, quick or full", "auto | none | quick | full",
                      "'" + options.bench + "'");
  }
  namespace fs = std::filesystem;
  const std::string work_dir = options.out_dir + "/suites";
  std::error_code ec;
  fs::create_directories(work_dir, ec);
  if (ec) {
    throw IoError(Where{.file = work_dir}, "cannot create the output directory", "a writable path", ec.message());
  }
  // Test binaries read QH_DEVICE: `cpu` makes GPU cases skip, `cuda` makes a missing GPU a failure.
  const std::map<std::string, std::string> env = {{"QH_DEVICE", options.device}};

  const auto suites = read_suite_manifest(bin_dir + "/qh_suites.json");
  ordered_json checks = ordered_json::array();
  {
    Progress progress("run", suites.size());
    for (const Suite& suite : suites) {
      const SuiteRun run = run_suite(suite, work_dir, env);
      for (auto& check : checks_from_run(suite, run)) checks.push_back(std::move(check));
      progress.step("suite " + suite.name + " (exit " + std::to_string(run.exit_code) + ")");
    }
  }
  ordered_json layers = ordered_json::array();
  run_gptq_fixtures(options.device, checks, layers);
  run_checkpoint_fixtures(options.out_dir, checks, layers);
  BenchResults bench;
  const std::string bench_set = options.bench == "auto" ? "quick" : options.bench;
  if (bench_set != "none") {
    // Without a GPU the GPU binaries skip their cases and only the CPU benchmarks report.
    bench = run_benchmarks({.out_dir = options.out_dir, .set = bench_set, .cpu_only = options.device == "cpu"}, bin_dir);
    for (const auto& f : bench.failures) {
      checks.push_back({{"name", "bench/" + f["binary"].get<std::string>()},
                        {"suite", "qharness.bench"},
                        {"status", "error"},
                        {"duration_s", 0.0},
                        {"message", "the benchmark binary failed (exit " + std::to_string(f["exit_code"].get<int>()) + ")"},
                        {"details", {{"console_tail", f["console_tail"]}}}});
    }
  }
  const ordered_json summary = summarize(checks);
  const ordered_json results = {{"schema_version", 1},
                                {"tool", tool_block()},
                                {"environment", environment_block()},
                                {"summary", summary},
                                {"checks", checks},
                                {"layers", layers},
                                {"benchmarks", bench.benchmarks},
                                {"probes", bench.probes}};
  const std::string path = options.out_dir + "/results.json";
  write_file_atomically(path, results.dump(2) + "\n");

  std::printf("qharness run: %d passed, %d failed, %d skipped, %d errors -> %s\n", summary["pass"].get<int>(),
              summary["fail"].get<int>(), summary["skip"].get<int>(), summary["error"].get<int>(), path.c_str());
  for (const auto& c : checks) {
    const std::string status = c["status"];
    if (status == "fail" || status == "error") {
      std::printf("  %s %s: %s\n", status.c_str(), c["name"].get<std::string>().c_str(),
                  c["message"].get<std::string>().c_str());
    }
  }
  std::fflush(stdout);  // the report's own output follows this summary
  const int report_rc = write_report({path}, options.out_dir, /*with_baselines=*/true);
  if (report_rc != 0) std::printf("qharness run: the report failed (exit %d); results.json is complete\n", report_rc);
  return (summary["fail"].get<int>() + summary["error"].get<int>()) == 0 && report_rc == 0 ? 0 : 1;
}

}  // namespace qh::cli
