// The parts of GPTQ that the reference and the optimized path share, so both run the same steps: input checks,
// the per-channel grid, dead columns, static groups, act-order and the damped factorization before the column loop
// (FORMATS.md 2.2 steps 1-7), and, after it, undoing act-order and filling the result and its summary.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "impl/gptq/config.h"
#include "impl/gptq/damping.h"
#include "impl/gptq/quantizer.h"
#include "impl/gptq/reference.h"

namespace qh::gptq {

struct PreparedLayer {
  at::Tensor w;              // (N, K) working precision, dead columns zeroed, columns in processing order
  at::Tensor hinv;           // (K, K) upper factor of the damped H^-1, working precision, processing order
  at::Tensor perm;           // (K,) int64: processing position -> original column
  at::Tensor invperm;        // (K,) int64: original column -> processing position
  QuantGrid channel_grid;    // step 2: per-row grid of the whole matrix (used when group_size == -1)
  QuantGrid static_grids;    // step 4: (N, K / G) grids of the unpermuted column blocks (static_groups only)
  Factorization factorization;
  HessianContext context;
  std::chrono::steady_clock::time_point start;
};

// Steps 1-7 on `device` in `dtype` (kFloat or kDouble). Throws as gptq_reference documents.
PreparedLayer prepare_layer(const at::Tensor& weight, const at::Tensor& hessian, const GptqConfig& config,
                            const std::string& layer, std::int64_t calib_tokens, c10::Device device,
                            at::ScalarType dtype);

// The result from the loop's outputs in processing order: q, codes, losses (N, K) and the group grids in the order
// the loop found them (non-static groups; ignored otherwise).
GptqResult finish_layer(const PreparedLayer& prepared, const GptqConfig& config, const at::Tensor& q,
                        const at::Tensor& codes, const at::Tensor& losses, const std::vector<at::Tensor>& scales,
                        const std::vector<at::Tensor>& zeros);

}  // namespace qh::gptq
