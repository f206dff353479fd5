#include "impl/cli/verify_command.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "impl/checkpoint/verify.h"
#include "impl/cli/environment.h"
#include "impl/cli/results_json.h"
#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"

namespace qh::cli {

int verify_command(const VerifyOptions& o) {
  using nlohmann::ordered_json;
  const checkpoint::VerifyReport report = checkpoint::verify_checkpoint(o.path, o.base);
  ordered_json checks = ordered_json::array();
  for (const auto& f : report.findings) {
    checks.push_back(check_json("verify/" + (f.layer.empty() ? "checkpoint" : f.layer) + "/" + f.check,
                                "qharness.verify", "fail", 0, f.message, {{"path", o.path}}));
  }
  for (const auto& layer : report.layers) {
    const bool clean = std::none_of(report.findings.begin(), report.findings.end(),
                                    [&](const checkpoint::Finding& f) { return f.layer == layer; });
    if (clean) checks.push_back(check_json("verify/" + layer, "qharness.verify", "pass", 0, "all checks passed"));
  }
  const int failed = int(report.findings.size());
  const ordered_json results = {{"schema_version", 1},
                                {"tool", tool_block()},
                                {"environment", environment_block()},
                                {"summary", {{"pass", int(checks.size()) - failed}, {"fail", failed},
                                             {"skip", 0}, {"error", 0}}},
                                {"checks", checks},
                                {"layers", ordered_json::array()},
                                {"benchmarks", ordered_json::array()},
                                {"probes", nullptr}};
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) throw IoError(Where{.file = o.out_dir}, "cannot create the output directory", "a writable path", ec.message());
  write_file_atomically(o.out_dir + "/results.json", results.dump(2) + "\n");

  for (const auto& f : report.findings) {
    std::printf("  FINDING %s [%s]: %s\n", f.layer.empty() ? "(checkpoint)" : f.layer.c_str(), f.check.c_str(),
                f.message.c_str());
  }
  for (const auto& n : report.notes) std::printf("  note: %s\n", n.c_str());
  std::printf("qharness verify: %zu quantized layers, %d findings -> %s/results.json\n", report.layers.size(), failed,
              o.out_dir.c_str());
  return failed == 0 ? 0 : 1;
}

}  // namespace qh::cli
