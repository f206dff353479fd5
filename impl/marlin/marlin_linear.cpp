#include "impl/marlin/marlin_linear.h"

#include <ATen/ATen.h>

#include <vector>

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"
#include "impl/marlin/gemm.h"
#include "impl/marlin/layout.h"
#include "impl/marlin/repack.h"

namespace qh::marlin {

namespace {

std::string number(std::int64_t v) { return std::to_string(v); }

// One int32 of eight codes 8: the weight 0 that fills padded rows and columns (Marlin's code is q - 8).
constexpr std::int32_t kZeroWeightWord = std::int32_t(0x88888888u);

// qweight (K/8, N) -> (k_padded/8, n_padded) on its device, the new rows and columns all code 8.
at::Tensor pad_qweight(const at::Tensor& qweight, const MarlinSpec& spec, const std::string& layer) {
  const std::vector<std::int64_t> shape{spec.in_features / 8, spec.out_features};
  if (qweight.scalar_type() != at::kInt || qweight.sizes().vec() != shape) {
    throw ShapeError(Where{.tensor = layer + ".qweight"}, "4-bit GPTQ qweight is (K/8, N) int32",
                     shape_text(shape) + " int32",
                     shape_text(qweight.sizes().vec()) + " " + c10::toString(qweight.scalar_type()));
  }
  const std::int64_t rows = spec.k_padded() / 8, cols = spec.n_padded();
  if (qweight.size(0) == rows && qweight.size(1) == cols) return qweight;
  at::Tensor out = at::full({rows, cols}, kZeroWeightWord, qweight.options());
  out.narrow(0, 0, qweight.size(0)).narrow(1, 0, qweight.size(1)).copy_(qweight);
  return out;
}

// perm (K,) -> (k_padded,): the padded tile rows K .. k_padded-1 read the padded qweight rows K .. k_padded-1 (all
// code 8). Extending the permutation, rather than gathering the K real rows and padding afterwards, keeps act-order
// in the repack's own gather (the CUDA kernel's and the CPU reference's), so both paths see one input.
at::Tensor pad_perm(const at::Tensor& perm, const MarlinSpec& spec) {
  if (spec.k_padded() == spec.in_features) return perm;
  return at::cat({perm, at::arange(spec.in_features, spec.k_padded(), perm.options())});
}

// GPTQ's act-order g_idx (FORMATS.md 1.6, without static_groups) puts the i-th column in activation order into
// group i / G: every group holds G columns but the last, which holds K - (groups - 1) G when G does not divide K.
// Sorted by group, row block g of B then lines up with scale row g; any other count breaks that.
void check_act_order_groups(const at::Tensor& g_idx, const MarlinSpec& spec, const std::string& layer) {
  if (spec.group_size == -1) return;
  const std::int64_t groups = spec.groups(), g = spec.group_size, last = spec.in_features - (groups - 1) * g;
  const at::Tensor counts = at::bincount(g_idx, {}, groups);
  at::Tensor expected = at::full({groups}, g, at::kLong);
  expected[groups - 1].fill_(last);
  if (counts.numel() == groups && counts.equal(expected)) return;
  const std::int64_t bad =
      counts.numel() != groups ? groups : (counts != expected).nonzero()[0][0].item<std::int64_t>();
  const std::string found = bad == groups ? "g_idx names group " + number(counts.numel() - 1)
                                          : "group " + number(bad) + " holds " +
                                                number(counts[bad].item<std::int64_t>()) + " columns";
  throw ConfigError(Where{.tensor = layer + ".g_idx"},
                    "act-order groups hold group_size columns each, the last one the remainder of K",
                    number(groups) + " groups of " + number(g) + " columns, the last of " + number(last), found);
}

}  // namespace

void MarlinSpec::validate(const std::string& layer) const {
  if (in_features <= 0 || out_features <= 0) {
    throw ShapeError(Where{.layer = layer}, "a linear layer has inputs and outputs", "K > 0 and N > 0",
                     "K = " + number(in_features) + ", N = " + number(out_features));
  }
  if (in_features % 8 != 0) {
    throw ShapeError(Where{.layer = layer}, "4-bit GPTQ packs 8 inputs per int32 (qweight is (K/8, N))",
                     "K % 8 == 0", "K = " + number(in_features) + " is not a multiple of 8");
  }
  if (group_size != -1 && group_size <= 0) {
    throw ConfigError(Where{.layer = layer}, "group_size is -1 (one scale row) or positive", "-1 or > 0",
                      "group_size = " + number(group_size));
  }
}

MarlinSpec marlin_spec_of(const quant_linear::QuantSpec& spec) {
  const bool one_group = spec.group_size == -1 || spec.group_size >= spec.in_features;
  return MarlinSpec{spec.in_features, spec.out_features, one_group ? -1 : spec.group_size, spec.desc_act};
}

MarlinLinear::MarlinLinear(const MarlinSpec& spec, bool bias, const at::TensorOptions& options, std::string layer)
    : Module("MarlinLinear"), spec_(spec), layer_(std::move(layer)) {
  const auto ints = options.dtype(at::kInt);
  register_buffer("B", at::empty({spec.k_padded() / 16, 2 * spec.n_padded()}, ints));
  register_buffer("s", at::empty({spec.groups(), spec.n_padded()}, options));
  if (spec.act_order) register_buffer("perm", at::empty({spec.in_features}, ints));
  if (bias) register_buffer("bias", at::empty({spec.out_features}, options));
}

at::Tensor MarlinLinear::dequantize() const {
  const auto optional = [this](const char* name) { return slot(name) ? slot(name)->value : at::Tensor(); };
  return marlin::dequantize(MarlinWeights{spec_, tensor("B"), tensor("s"), optional("perm"), optional("bias")});
}

at::Tensor MarlinLinear::forward(const at::Tensor& x) const {
  const at::Tensor& s = tensor("s");
  if (x.device().is_cuda() && s.device() == x.device() &&
      (s.scalar_type() == at::kHalf || s.scalar_type() == at::kBFloat16)) {
    if (x.numel() == 0) {  // an empty batch: nothing to launch
      std::vector<std::int64_t> shape = x.sizes().vec();
      shape.back() = spec_.out_features;
      return at::empty(shape, x.options().dtype(s.scalar_type()));
    }
    const auto optional = [this](const char* name) { return slot(name) ? slot(name)->value : at::Tensor(); };
    const MarlinWeights weights{spec_, tensor("B"), s, optional("perm"), optional("bias")};
    return gemm(x.to(s.scalar_type()).contiguous(), weights, layer_);
  }
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
    throw ConfigError(Where{.layer = layer}, "Marlin holds 4-bit codes", "bits = 4", "bits = " + number(q.bits));
  }
  if (!q.sym) {
    throw ConfigError(Where{.layer = layer}, "Marlin's GPTQ path has no zero points (symmetric only)", "sym: true",
                      "sym: false (asymmetric zero points)");
  }
  const MarlinSpec spec = marlin_spec_of(q);
  const int g = spec.group_size;
  if (!spec.group_size_supported()) {
    throw ConfigError(Where{.layer = layer}, "Marlin supports group sizes -1, 32, 64 and 128 (vLLM's list)",
                      "-1, 32, 64, 128 or K", "group_size = " + number(q.group_size));
  }
  spec.validate(layer);
  // Symmetric zero points are 8 everywhere (validate_packed checks it when loading); Marlin's code is q - 8.
  const quant_linear::PackedWeights p = source.packed();
  at::Tensor perm;
  if (q.desc_act) {
    const at::Tensor g_idx = p.g_idx.cpu().to(at::kLong);
    check_act_order_groups(g_idx, spec, layer);
    perm = at::argsort(g_idx, /*stable=*/true).to(at::kInt).to(device);
  }
  auto out = std::make_unique<MarlinLinear>(spec, source.has_bias(),
                                            at::TensorOptions().dtype(p.scales.scalar_type()).device(device), layer);
  out->slot("B")->value = repack_gptq_qweight(pad_qweight(p.qweight.to(device), spec, layer),
                                              perm.defined() ? pad_perm(perm, spec) : perm, spec.k_padded(),
                                              spec.n_padded(), layer);
  const at::Tensor scales = g == -1 ? p.scales.narrow(0, 0, 1) : p.scales;  // one group: one row
  const at::Tensor padded_scales = at::constant_pad_nd(scales.to(device), {0, spec.n_padded() - spec.out_features});
  out->slot("s")->value = permute_scales(padded_scales, g != -1, layer);
  if (spec.act_order) out->slot("perm")->value = perm;
  if (source.has_bias()) model::copy_into(out->slot("bias")->value, source.tensor("bias"), layer + ".bias");
  return out;
}

}  // namespace qh::marlin
