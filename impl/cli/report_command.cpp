#include "impl/cli/report_command.h"

#include <cstdlib>
#include <map>

#include "impl/cli/suites.h"

namespace qh::cli {

namespace {

std::string python() {
  const char* env = std::getenv("QH_PYTHON");
  return env != nullptr && *env != '\0' ? env : QH_PYTHON;
}

}  // namespace

int run_qh_report(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {python(), "-m", "qh_report"};
  argv.insert(argv.end(), args.begin(), args.end());
  // PYTHONPATH is replaced, not extended: the report must use this tree's qh_report, not another on the path.
  return run_process(argv, "", {{"PYTHONPATH", QH_SOURCE_DIR "/reports"}, {"PYTHONUNBUFFERED", "1"}});
}

std::string baselines_dir() { return QH_SOURCE_DIR "/fixtures/baselines"; }

int write_report(const std::vector<std::string>& results_paths, const std::string& out_dir, bool with_baselines) {
  std::vector<std::string> args = {"html"};
  args.insert(args.end(), results_paths.begin(), results_paths.end());
  args.insert(args.end(), {"--out", out_dir});
  if (with_baselines) args.insert(args.end(), {"--baselines", baselines_dir()});
  return run_qh_report(args);
}

}  // namespace qh::cli
