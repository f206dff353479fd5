// Conformance suites as `qharness run` sees them: test binaries listed in bin/qh_suites.json (written by CMake),
// executed with --gtest_output=json, their cases turned into results.json checks.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qh::cli {

struct Suite {
  std::string name;  // the test binary's target name, e.g. "qh_format_tests"
  std::string path;
};

// Reads the manifest; throws IoError/ConfigError naming it when missing or malformed.
std::vector<Suite> read_suite_manifest(const std::string& manifest_path);

struct SuiteRun {
  int exit_code = 0;            // the binary's exit status; 128 + signal when it was killed by one
  std::string console;          // stdout + stderr
  std::string gtest_json_path;  // where it was asked to write its report
};

// Runs args[0] with args[1..], the environment plus `env`, stdout + stderr to `console_path` (an empty path keeps
// this process's stdout and stderr); returns the exit status (128 + signal when killed by one). Throws IoError
// naming the program when it cannot start.
int run_process(const std::vector<std::string>& args, const std::string& console_path,
                const std::map<std::string, std::string>& env);

// Runs `suite` with --gtest_output=json:<work_dir>/<name>.json, extra environment `env`, console captured.
SuiteRun run_suite(const Suite& suite, const std::string& work_dir, const std::map<std::string, std::string>& env);

// results.json checks for one suite run: one per test case (pass | fail | skip, with the failure or skip text),
// plus one `error` check when the binary crashed, timed out or wrote no report (naming the case that was running).
nlohmann::ordered_json checks_from_run(const Suite& suite, const SuiteRun& run);

}  // namespace qh::cli
