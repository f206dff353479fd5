#include "impl/marlin/marlin_linear.h"

#include <ATen/ATen.h>

#include "impl/core/errors.h"
#include "impl/marlin/layout.h"
#include "impl/marlin/repack.h"

namespace qh::marlin {

void MarlinSpec::validate(const std::string& layer) const {
  if (in_features <= 0 || in_features % 16 != 0 || out_features <= 0 || out_features % 64 != 0) {
    throw ShapeError(Where{.layer = layer}, "Marlin tiles need K % 16 == 0 and N % 64 == 0", "multiples",
                     "K = " + std::to_string(in_features) + ", N = " + std::to_string(out_features));
  }
  if (group_size != -1 && (group_size <= 0 || in_features % group_size != 0)) {
    throw ShapeError(Where{.layer = layer}, "K must be a multiple of group_size",
                     "K % group_size == 0", "K = " + std::to_string(in_features) + " is not a multiple of group_size " +
                                                std::to_string(group_size));
  }
}

MarlinLinear::MarlinLinear(const MarlinSpec& spec, bool bias, const at::TensorOptions& options)
    : Module("MarlinLinear"), spec_(spec) {
  const auto ints = options.dtype(at::kInt);
  register_buffer("B", at::empty({spec.in_features / 16, 2 * spec.out_features}, ints));
  register_buffer("s", at::empty({spec.groups(), spec.out_features}, options));
  if (spec.act_order) register_buffer("perm", at::empty({spec.in_features}, ints));
  if (bias) register_buffer("bias", at::empty({spec.out_features}, options));
}

at::Tensor MarlinLinear::dequantize() const {
  const std::int64_t k = spec_.in_features, n = spec_.out_features;
  const at::Tensor codes = unpack_weights(tensor("B"), k, n, "").to(at::kFloat);  // rows in perm order
  const bool grouped = spec_.groups() > 1;
  const at::Tensor s = unpermute_scales(tensor("s").cpu(), grouped, "").to(at::kFloat);
  const at::Tensor rows = grouped ? s.repeat_interleave(spec_.group_size, 0) : s.expand({k, n});
  at::Tensor w = (rows * (codes - 8)).to(tensor("s").scalar_type());  // symmetric 4-bit: zero point 8
  if (spec_.act_order) {
    at::Tensor original = at::empty_like(w);
    original.index_copy_(0, tensor("perm").cpu().to(at::kLong), w);  // row i of B is input perm[i]
    w = original;
  }
  return w.to(tensor("B").device());
}

at::Tensor MarlinLinear::forward(const at::Tensor& x) const {
  const at::Tensor w = dequantize();
  at::Tensor y = x.to(w.scalar_type()).matmul(w);
  if (const auto b = slot("bias")) y = y + b->value;
  return y;
}

std::unique_ptr<MarlinLinear> to_marlin(const quant_linear::QuantLinear& source, c10::Device device,
                                        const std::string& layer) {
  const quant_linear::QuantSpec& q = source.spec();
  if (source.tensor("qweight").is_meta()) {
    throw ConfigError(Where{.layer = layer}, "conversion reads the packed weights", "a materialized QuantLinear",
                      "buffers on meta (load the checkpoint first)");
  }
  if (q.bits != 4) {
    throw ConfigError(Where{.layer = layer}, "Marlin holds 4-bit codes", "bits = 4", "bits = " + std::to_string(q.bits));
  }
  if (!q.sym) {
    throw ConfigError(Where{.layer = layer}, "Marlin's GPTQ path has no zero points (symmetric only)", "sym: true",
                      "sym: false (asymmetric zero points)");
  }
  const int g = q.group_size == -1 || q.group_size == q.in_features ? -1 : q.group_size;
  if (g != -1 && g != 32 && g != 64 && g != 128) {
    throw ConfigError(Where{.layer = layer}, "Marlin supports group sizes -1, 32, 64 and 128 (vLLM's list)",
                      "-1, 32, 64, 128 or K", "group_size = " + std::to_string(q.group_size));
  }
  const MarlinSpec spec{q.in_features, q.out_features, g, q.desc_act};
  spec.validate(layer);
  // Symmetric zero points are 8 everywhere (validate_packed checks it when loading); Marlin's code is q - 8.
  const quant_linear::PackedWeights p = source.packed();
  at::Tensor perm;
  if (q.desc_act) {
    const at::Tensor g_idx = p.g_idx.cpu().to(at::kLong);
    perm = at::argsort(g_idx, /*stable=*/true).to(at::kInt);
    const at::Tensor counts = at::bincount(g_idx);
    if (g != -1 && (counts.numel() != spec.groups() || !counts.eq(g).all().item<bool>())) {
      throw ConfigError(Where{.tensor = layer + ".g_idx"}, "act-order groups must hold group_size columns each",
                        std::to_string(spec.groups()) + " groups of " + std::to_string(g),
                        "group sizes " + std::to_string(counts.min().item<std::int64_t>()) + " .. " +
                            std::to_string(counts.max().item<std::int64_t>()));
    }
  }
  auto out = std::make_unique<MarlinLinear>(spec, source.has_bias(),
                                            at::TensorOptions().dtype(p.scales.scalar_type()).device(device));
  out->slot("B")->value = repack_gptq_qweight(p.qweight.to(device), perm.defined() ? perm.to(device) : perm,
                                              spec.in_features, spec.out_features, layer);
  const at::Tensor scales = g == -1 ? p.scales.narrow(0, 0, 1) : p.scales;  // group_size == K: one row
  out->slot("s")->value = permute_scales(scales.to(device), spec.groups() > 1, layer);
  if (spec.act_order) out->slot("perm")->value = perm.to(device);
  if (source.has_bias()) model::copy_into(out->slot("bias")->value, source.tensor("bias"), layer + ".bias");
  return out;
}

}  // namespace qh::marlin
