// QuantLinear: a GPTQ-quantized linear layer as the tools register it (FORMATS.md 1.1): buffers qweight, qzeros,
// scales, g_idx and, exactly when the original Linear had one, bias. A layer built without a bias has no `bias`
// entry at all, so a checkpoint that carries one is reported as an unexpected tensor by the loader instead of
// being dropped, and one built with a bias reports a checkpoint without it as missing (AutoGPTQ #601/#610).
#pragma once

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "impl/model/module.h"
#include "impl/quant_linear/packing.h"

namespace qh::quant_linear {

class QuantLinear : public model::Module {
 public:
  // Buffers with the shapes of `spec` on options.device() (meta: no memory); scales and bias in options.dtype().
  QuantLinear(const QuantSpec& spec, bool bias, const at::TensorOptions& options);

  const QuantSpec& spec() const { return spec_; }
  bool has_bias() const { return slot("bias") != nullptr; }
  PackedWeights packed() const;
  // Replaces the four packed buffers (after validate_packed) keeping their device.
  void set_packed(const PackedWeights& packed);
  // Rewrites qzeros for `to` (v1 <-> v2) and records it in the spec.
  void set_zero_format(ZeroFormat to, const std::string& layer);
  // Records that the stored qzeros already use `format` (no conversion): for checkpoints whose config is silent.
  void reinterpret_zero_format(ZeroFormat format) { spec_.zero_format = format; }

  // W (K, N) in the scales' dtype on the buffers' device: the CUDA dequantize kernel on a GPU, the reference on
  // the CPU.
  at::Tensor dequantize() const;
  // y = x W + bias, x (..., K) cast to the scales' dtype.
  at::Tensor forward(const at::Tensor& x) const override;

 private:
  QuantSpec spec_;
};

// A QuantLinear holding packed GPTQ output: codes (N, K), zeros (N, groups), scales (N, groups), g_idx (K,),
// and `bias` (N,) when the original layer had one (undefined otherwise). Built on the CPU in `dtype`.
std::unique_ptr<QuantLinear> make_quant_linear(const at::Tensor& codes, const at::Tensor& zeros,
                                               const at::Tensor& scales, const at::Tensor& g_idx,
                                               const at::Tensor& bias, const QuantSpec& spec, c10::ScalarType dtype,
                                               const std::string& layer);

}  // namespace qh::quant_linear
