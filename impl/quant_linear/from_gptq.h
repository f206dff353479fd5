// GPTQ output -> QuantLinear: what the tools' QuantLinear.pack(linear, scales, zeros, g_idx) does after
// fasterquant (FORMATS.md 1.4), but with the codes GPTQ chose instead of re-deriving them from the fake-quantized
// weight, so no rounding of the scale can move a code. The bias is carried over exactly when the Linear has one.
#pragma once

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "impl/gptq/config.h"
#include "impl/quant_linear/quant_linear.h"

namespace qh::quant_linear {

struct QuantizedLinear {
  std::unique_ptr<QuantLinear> module;
  gptq::LayerSummary summary;
};

// Quantizes weight (N, K) with `hessian` (K, K): the reference GPTQ on the CPU, the optimized one on a CUDA
// `device`. Buffers end on the CPU; scales and bias in `dtype`. `bias` may be undefined.
QuantizedLinear quantize_linear(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& hessian,
                                const gptq::GptqConfig& config, ZeroFormat format, c10::ScalarType dtype,
                                const std::string& layer, c10::Device device = c10::kCPU,
                                std::int64_t calib_tokens = -1);

}  // namespace qh::quant_linear
