// `qharness quantize`: GPTQ every Linear weight of a safetensors file that has calibration data, and write a GPTQ
// checkpoint in GPTQModel's layout (DESIGN.md): model.safetensors, quantize_config.json and config.json with
// `quantization_config`. Nothing is written until every layer is done, and each file is replaced atomically.
#pragma once

#include <string>
#include <vector>

#include "impl/format/quantize_config.h"
#include "impl/gptq/config.h"

namespace qh::cli {

struct QuantizeOptions {
  std::string weights;      // safetensors: <layer>.weight (out, in) fp16/bf16/fp32, optional <layer>.bias, others
  std::string calibration;  // safetensors: <layer>.hessian (in, in) or <layer>.inputs (..., in)
  std::string out_dir;
  std::string base_config;  // the model's config.json to extend ("" -> a config.json with quantization_config only)
  format::QuantizeConfig config;  // bits, group_size, sym, desc_act, checkpoint_format, damping, static_groups
  std::vector<std::string> skip;  // skip keys (whole name components), stored as modules_to_not_convert
  std::string device = "cpu";     // cpu: reference GPTQ; cuda: the optimized path
  bool float64 = false;           // reference in float64
};

struct QuantizeResult {
  std::vector<gptq::LayerSummary> layers;  // quantized, in file order
  std::vector<std::string> kept;           // 2-D weights left in full precision (no calibration data, or skipped)
};

// Quantizes and writes the checkpoint; `progress` shows per-layer progress on stderr. Throws qh::Error for bad
// input, before anything is written.
QuantizeResult quantize_checkpoint(const QuantizeOptions& options, bool progress = true);

// The command: quantize_checkpoint plus the summary table. Returns 0; the CLI maps a qh::Error to exit status 2.
int quantize_command(const QuantizeOptions& options);

}  // namespace qh::cli
