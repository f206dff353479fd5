// `qharness run`'s checkpoint checks on a built-in fixture: a tiny llama-like model with biases goes through
// `quantize` (v1 symmetric, and gptq_v2 asymmetric), `verify` and the loader, so the CLI-level path that the
// bias, meta and v1/v2 failures live on runs in every report.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "impl/cli/quantize_command.h"
#include "impl/model/architectures.h"

namespace qh::cli {

// Writes DIR/weights.safetensors (every tensor of `model`), DIR/calib.safetensors (<layer>.inputs, correlated fp16
// activations, for every Linear but the output head) and DIR/config.json; returns quantize options reading them and
// writing DIR/gptq (group size 32, everything else default).
QuantizeOptions write_quantize_inputs(const model::Model& model, const std::string& dir, std::uint64_t seed);

// Appends checks (suite "qharness.checkpoint") and the quantized layers' summaries (path "checkpoint").
void run_checkpoint_fixtures(const std::string& out_dir, nlohmann::ordered_json& checks,
                             nlohmann::ordered_json& layers);

}  // namespace qh::cli
