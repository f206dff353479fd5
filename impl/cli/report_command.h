// `qharness report` and `qharness gate`, and the report step of `qharness run`: fronts for the Python package
// qh_report in this source tree's reports/ (docs/reports.md), run with the build's Python (the venv that provided
// LibTorch; the environment variable QH_PYTHON overrides it). qh_report's output and exit status pass through.
#pragma once

#include <string>
#include <vector>

namespace qh::cli {

// `python -m qh_report ARGS...`; returns its exit status. Throws IoError when the interpreter cannot start.
int run_qh_report(const std::vector<std::string>& args);

// The committed baselines (fixtures/baselines/) that reports put beside a run.
std::string baselines_dir();

// report.html + summary.json in out_dir for the results files (the first is the current run), with the committed
// baselines beside them unless `with_baselines` is false. Returns qh_report's exit status.
int write_report(const std::vector<std::string>& results_paths, const std::string& out_dir, bool with_baselines);

}  // namespace qh::cli
