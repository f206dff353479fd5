// Reference GPTQ on the CPU, float64 or float32: the algorithm of IST-DASLab gptq `fasterquant` as AutoGPTQ runs it
// (FORMATS.md 2.2), written to be read. It is the oracle for the optimized CUDA path.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "impl/gptq/config.h"

namespace qh::gptq {

// One quantized layer. Columns are in the layer's original order (act-order is undone).
struct GptqResult {
  at::Tensor q;       // (N, K) fake-quantized weights, working precision
  at::Tensor codes;   // (N, K) int32 in [0, maxq]
  at::Tensor scales;  // (N, ngroups), working precision; group g = column block g, or the g-th block in act-order
  at::Tensor zeros;   // (N, ngroups), integer-valued
  at::Tensor g_idx;   // (K,) int32: the group of each column
  at::Tensor losses;  // (K,) sum over rows of (w - q)^2 / d^2 / 2
  LayerSummary summary;
};

// Quantizes `weight` (N = out_features, K = in_features) with the Hessian `hessian` (K, K) of its inputs.
// `calib_tokens` (when known) makes the errors for a rank-deficient H say how many tokens were seen.
// Throws ConfigError (settings), ShapeError (shapes), NumericError (NaN/Inf, unrecoverable H), naming `layer`.
GptqResult gptq_reference(const at::Tensor& weight, const at::Tensor& hessian, const GptqConfig& config,
                          const std::string& layer, std::int64_t calib_tokens = -1);

}  // namespace qh::gptq
