// `qharness verify PATH`: the checks of impl/checkpoint/verify on a checkpoint directory, printed as a list and
// written as checks (suite "qharness.verify") into OUT/results.json.
#pragma once

#include <string>

namespace qh::cli {

struct VerifyOptions {
  std::string path;
  std::string base;  // the unquantized model's directory, or ""
  std::string out_dir = "reports/out/verify";
};

// 0: no findings; 1: findings. Throws qh::Error when PATH cannot be read at all.
int verify_command(const VerifyOptions& options);

}  // namespace qh::cli
