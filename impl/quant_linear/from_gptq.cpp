#include "impl/quant_linear/from_gptq.h"

#include <ATen/ATen.h>

#include "impl/gptq/reference.h"

namespace qh::quant_linear {

QuantizedLinear quantize_linear(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& hessian,
                                const gptq::GptqConfig& config, ZeroFormat format, c10::ScalarType dtype,
                                const std::string& layer, c10::Device device, std::int64_t calib_tokens) {
  const gptq::GptqResult r = device.is_cuda()
                                 ? gptq::gptq_optimized(weight, hessian, config, layer, calib_tokens, device)
                                 : gptq::gptq_reference(weight, hessian, config, layer, calib_tokens);
  QuantSpec spec{weight.size(1), weight.size(0), config.bits, config.group_size, config.sym, config.desc_act, format};
  auto module = make_quant_linear(r.codes.cpu(), r.zeros.cpu(), r.scales.cpu(), r.g_idx.cpu(), bias, spec, dtype, layer);
  return {std::move(module), r.summary};
}

}  // namespace qh::quant_linear
