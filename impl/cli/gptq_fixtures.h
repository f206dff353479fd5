// `qharness run`'s GPTQ checks on built-in synthetic layers (fixed seeds): calibration activations through the
// Hessian accumulator, the reference GPTQ on the CPU (checked against round-to-nearest on the output error it
// minimizes), the optimized CUDA path against the reference when a GPU is used, and one layer whose calibration
// set is too small and has a dead column, so the damping recovery shows in the report.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace qh::cli {

// Appends checks (suite "qharness.gptq") to `checks` and per-layer summaries to `layers`. `device`: auto | cpu |
// cuda, as for `qharness run`.
void run_gptq_fixtures(const std::string& device, nlohmann::ordered_json& checks, nlohmann::ordered_json& layers);

}  // namespace qh::cli
