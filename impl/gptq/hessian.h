// Hessian accumulation from calibration activations: the running average H = 2/n * sum x x^T of IST-DASLab gptq
// add_batch (FORMATS.md 2.1), where n counts samples (the leading dimension of a batch of sequences; a 2-D batch of
// tokens is one sample), on CPU or CUDA, accumulated in float32 (the published code) or float64.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace qh::gptq {

class HessianAccumulator {
 public:
  // `columns` = in_features of the layer named `layer` (for errors); `dtype` kFloat or kDouble.
  HessianAccumulator(std::int64_t columns, std::string layer, at::ScalarType dtype = at::kFloat,
                     c10::Device device = c10::kCPU);

  // inputs: (tokens, K) or (batch, ..., K), fp16/bf16/fp32/fp64, on any device (moved to the accumulator's).
  // Throws ShapeError (last dimension != K), ConfigError (dtype) or NumericError (NaN/Inf), naming the layer.
  void add_batch(const at::Tensor& inputs);

  // H; throws ConfigError when no token was added (an empty calibration set).
  const at::Tensor& hessian() const;
  std::int64_t samples() const { return samples_; }
  std::int64_t tokens() const { return tokens_; }

 private:
  std::string layer_;
  at::Tensor h_;
  std::int64_t samples_ = 0;
  std::int64_t tokens_ = 0;
};

}  // namespace qh::gptq
