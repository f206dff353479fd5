// Reference GPTQ on the CPU, float64 or float32: the algorithm of IST-DASLab gptq `fasterquant` as AutoGPTQ runs it
// (FORMATS.md 2.2), written to be read. It is the oracle for the optimized CUDA path declared beside it.
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
  at::Tensor losses;  // (K,) float64, sum over rows of (w - q)^2 / d^2 / 2: it scales with H, so in float32 it
                      // overflowed for Hessians near float32's range while Q stayed finite (hessian_stress_test)
  LayerSummary summary;
};

// Quantizes `weight` (N = out_features, K = in_features) with the Hessian `hessian` (K, K) of its inputs.
// `calib_tokens` (when known) makes the errors for a rank-deficient H say how many tokens were seen.
// Throws ConfigError (settings), ShapeError (shapes), NumericError (NaN/Inf, unrecoverable H), naming `layer`.
// The reference runs on the CPU; on another `device` the same per-column loop is the plain-torch baseline that
// the benchmarks time next to gptq_optimized.
GptqResult gptq_reference(const at::Tensor& weight, const at::Tensor& hessian, const GptqConfig& config,
                          const std::string& layer, std::int64_t calib_tokens = -1,
                          c10::Device device = c10::kCPU);

// The same algorithm on a CUDA device in float32: the column loop of each block in one kernel (a warp per row,
// the block of H^-1 in shared memory), the trailing update as one GEMM, the factorization through ATen
// (cuSOLVER). Result tensors stay on the device. block_size must be <= 128. Throws ConfigError without CUDA.
GptqResult gptq_optimized(const at::Tensor& weight, const at::Tensor& hessian, const GptqConfig& config,
                          const std::string& layer, std::int64_t calib_tokens = -1,
                          c10::Device device = c10::Device(c10::kCUDA, 0));

}  // namespace qh::gptq
