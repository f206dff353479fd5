// The model testbed of the checkpoint suites: tiny llama-like / hyena-like models with seeded random weights,
// quantized with GPTQ where the loader's plan says so, and token batches to run them on.
#pragma once

#include <ATen/ATen.h>

#include "conformance/gptq_case.h"
#include "conformance/testing.h"
#include "impl/checkpoint/loader.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/checkpoint/writer.h"
#include "impl/model/layers.h"
#include "impl/quant_linear/from_gptq.h"

namespace qh::testing {

inline format::QuantizeConfig quantize_config(int bits = 4, int group_size = 32, bool sym = true,
                                              bool desc_act = false,
                                              format::CheckpointFormat fmt = format::CheckpointFormat::Gptq) {
  format::QuantizeConfig c;
  c.bits = bits;
  c.group_size = group_size;
  c.sym = sym;
  c.desc_act = desc_act;
  c.checkpoint_format = fmt;
  c.quantizer = {"qharness:test"};
  return c;
}

// `config`'s architecture on the CPU with seeded weights; every module the plan marks Quantized is replaced by a
// QuantLinear made by GPTQ (reference, float32) on a Hessian of correlated activations.
inline model::Model quantized_model(const format::ModelConfig& config, const format::QuantizeConfig& qc,
                                    const checkpoint::SkipRules& skip = {}, std::uint64_t seed = 7) {
  model::Model m = model::build_model(config, c10::kCPU);
  model::init_random(m, seed);
  const checkpoint::QuantizedLayout layout = checkpoint::layout_from(qc);
  std::uint64_t layer_seed = seed;
  for (const auto& d : checkpoint::plan_modules(m, layout, skip)) {
    if (d.action != checkpoint::ModuleAction::Quantized) continue;
    const auto* linear = dynamic_cast<const model::Linear*>(model::find_module(*m.root, d.module));
    const at::Tensor w = linear->tensor("weight");
    const at::Tensor h = hessian_of(correlated_activations(4 * w.size(1), w.size(1), ++layer_seed)).to(at::kFloat);
    const auto spec = *layout.spec_for(d.module, w.size(1), w.size(0));
    gptq::GptqConfig gc;
    gc.bits = spec.bits;
    gc.group_size = spec.group_size;
    gc.sym = spec.sym;
    gc.desc_act = spec.desc_act;
    const at::Tensor bias = linear->has_bias() ? linear->tensor("bias") : at::Tensor();
    auto q = quant_linear::quantize_linear(w.to(at::kFloat), bias, h, gc, layout.zero_format, w.scalar_type(),
                                           d.module);
    model::replace_module(*m.root, d.module, std::move(q.module));
  }
  return m;
}

// `config`'s architecture with every module the plan marks Quantized replaced by a symmetric QuantLinear of seeded
// random codes and scales (no GPTQ), for shapes that real checkpoints have but our GPTQ refuses: K not a multiple
// of the group size (AutoGPTQ's slice-per-group loop leaves a partial last group). Act-order layers get GPTQ's
// g_idx for a random activation order (FORMATS.md 1.6): position i in that order is in group i / G.
inline model::Model packed_model(const format::ModelConfig& config, const format::QuantizeConfig& qc,
                                 std::uint64_t seed = 7) {
  model::Model m = model::build_model(config, c10::kCPU);
  model::init_random(m, seed);
  const checkpoint::QuantizedLayout layout = checkpoint::layout_from(qc);
  at::manual_seed(seed);
  for (const auto& d : checkpoint::plan_modules(m, layout, {})) {
    if (d.action != checkpoint::ModuleAction::Quantized) continue;
    const auto* linear = dynamic_cast<const model::Linear*>(model::find_module(*m.root, d.module));
    const at::Tensor& w = linear->tensor("weight");
    const auto spec = *layout.spec_for(d.module, w.size(1), w.size(0));
    const std::int64_t k = spec.in_features, n = spec.out_features, groups = spec.groups();
    at::Tensor g_idx = at::arange(k, at::kLong).div(spec.group_length(), "floor");
    if (spec.desc_act) g_idx = at::empty_like(g_idx).index_copy_(0, at::randperm(k, at::kLong), g_idx);
    const at::Tensor codes = at::randint(spec.maxq() + 1, {n, k}, at::kInt);
    const at::Tensor zeros = at::full({n, groups}, 1 << (spec.bits - 1));  // symmetric: the grid's midpoint
    const at::Tensor scales = at::rand({n, groups}) * 0.02 + 1e-3;
    const at::Tensor bias = linear->has_bias() ? linear->tensor("bias") : at::Tensor();
    model::replace_module(*m.root, d.module,
                          quant_linear::make_quant_linear(codes, zeros, scales, g_idx.to(at::kInt), bias, spec,
                                                          w.scalar_type(), d.module));
  }
  return m;
}

// Every QuantLinear of `m` rewritten to the zero-point convention `to` (words change, weights do not).
inline void set_zero_format(model::Model& m, quant_linear::ZeroFormat to) {
  for (const auto& [name, module] : model::named_modules(*m.root)) {
    if (auto* q = dynamic_cast<quant_linear::QuantLinear*>(model::find_module(*m.root, name))) {
      q->set_zero_format(to, name);
    }
  }
}

inline at::Tensor token_batch(std::int64_t vocab, std::uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(vocab, {2, 8}, at::kLong);
}

inline const at::Tensor& tensor_at(model::Model& m, const std::string& module, const std::string& name) {
  return model::find_module(*m.root, module)->tensor(name);
}

// Rewrites dir/model.safetensors without `drop` and with `replace` swapped in (or added): damaged copies of a
// saved checkpoint for the loader and verify suites.
inline void rewrite_tensors(const TempDir& dir, const std::string& drop,
                     const std::map<std::string, at::Tensor>& replace = {}) {
  auto all = checkpoint::load_all(dir.file("model.safetensors"), c10::kCPU);
  std::vector<std::pair<std::string, at::Tensor>> kept;
  for (auto& [name, t] : all) {
    if (name == drop) continue;
    const auto r = replace.find(name);
    kept.emplace_back(name, r == replace.end() ? t.clone() : r->second);
  }
  for (const auto& [name, t] : replace) {
    if (all.count(name) == 0) kept.emplace_back(name, t);
  }
  all.clear();  // release the mapping before replacing the file
  checkpoint::save_tensors(dir.file("model.safetensors"), kept, {{"format", "pt"}});
}

}  // namespace qh::testing
