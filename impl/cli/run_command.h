// `qharness run`: the main job. Executes every conformance suite of the build and the GPTQ checks on built-in
// synthetic layers, merges their results with the environment into results.json (docs/results.md), and fails when
// a check fails.
#pragma once

#include <string>

namespace qh::cli {

struct RunOptions {
  std::string out_dir = "reports/out";
  std::string device = "auto";  // auto | cpu | cuda
  std::string bench = "auto";   // auto (quick when a GPU is used) | none | quick | full
};

// Returns the process exit code: 0 all checks passed or skipped, 1 a check failed or errored.
int run_command(const RunOptions& options, const std::string& bin_dir);

}  // namespace qh::cli
