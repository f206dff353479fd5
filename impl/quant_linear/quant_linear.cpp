#include "impl/quant_linear/quant_linear.h"

#include <ATen/ATen.h>

#include "impl/core/errors.h"
#include "impl/quant_linear/dequantize.h"

namespace qh::quant_linear {

QuantLinear::QuantLinear(const QuantSpec& spec, bool bias, const at::TensorOptions& options)
    : Module("QuantLinear"), spec_(spec) {
  const auto ints = options.dtype(at::kInt);
  register_buffer("qweight", at::empty({spec.qweight_rows(), spec.out_features}, ints));
  register_buffer("qzeros", at::empty({spec.groups(), spec.qzeros_cols()}, ints));
  register_buffer("scales", at::empty({spec.groups(), spec.out_features}, options));
  register_buffer("g_idx", at::empty({spec.in_features}, ints));
  if (bias) register_buffer("bias", at::empty({spec.out_features}, options));
}

PackedWeights QuantLinear::packed() const {
  return {tensor("qweight"), tensor("qzeros"), tensor("scales"), tensor("g_idx")};
}

void QuantLinear::set_packed(const PackedWeights& p) {
  const c10::Device device = tensor("qweight").device();
  slot("qweight")->value = p.qweight.to(device);
  slot("qzeros")->value = p.qzeros.to(device);
  slot("scales")->value = p.scales.to(device);
  slot("g_idx")->value = p.g_idx.to(device);
}

void QuantLinear::set_zero_format(ZeroFormat to, const std::string& layer) {
  slot("qzeros")->value = convert_qzeros(tensor("qzeros"), spec_, to, layer);
  spec_.zero_format = to;
}

at::Tensor QuantLinear::dequantize() const { return dequantize_weights(packed(), spec_); }

at::Tensor QuantLinear::forward(const at::Tensor& x) const {
  const at::Tensor w = dequantize();
  at::Tensor y = x.to(w.scalar_type()).matmul(w);
  if (const auto b = slot("bias")) y = y + b->value;
  return y;
}

std::unique_ptr<QuantLinear> make_quant_linear(const at::Tensor& codes, const at::Tensor& zeros,
                                               const at::Tensor& scales, const at::Tensor& g_idx,
                                               const at::Tensor& bias, const QuantSpec& spec, c10::ScalarType dtype,
                                               const std::string& layer) {
  auto module = std::make_unique<QuantLinear>(spec, bias.defined(), at::TensorOptions().dtype(dtype));
  module->set_packed(pack(codes, zeros, scales, g_idx, spec, dtype, layer));
  if (bias.defined()) {
    if (bias.sizes().vec() != std::vector<std::int64_t>{spec.out_features}) {
      throw ShapeError(Where{.tensor = layer + ".bias"}, "bias has one entry per output feature",
                       "(" + std::to_string(spec.out_features) + ")", std::to_string(bias.numel()) + " entries");
    }
    module->slot("bias")->value = bias.to(at::kCPU).to(dtype).contiguous();
  }
  return module;
}

}  // namespace qh::quant_linear
