#include "impl/gptq/prepare.h"

#include <ATen/ATen.h>

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"

namespace qh::gptq {

namespace {

using at::indexing::Slice;

void check_inputs(const at::Tensor& weight, const at::Tensor& hessian, const std::string& layer) {
  const Where where{.layer = layer};
  if (weight.dim() != 2 || weight.size(0) == 0 || weight.size(1) == 0) {
    throw ShapeError(where, "weight must be (out_features, in_features), both > 0", "a non-empty 2-D tensor",
                     "shape " + shape_text(weight.sizes()));
  }
  if (!at::isFloatingType(weight.scalar_type())) {
    throw ConfigError(where, "weight must be floating point", "float16, bfloat16, float32 or float64",
                      c10::toString(weight.scalar_type()));
  }
  const std::int64_t k = weight.size(1);
  if (hessian.dim() != 2 || hessian.size(0) != k || hessian.size(1) != k) {
    throw ShapeError(where, "the Hessian must be (in_features, in_features)",
                     "shape [" + std::to_string(k) + ", " + std::to_string(k) + "]",
                     "shape " + shape_text(hessian.sizes()));
  }
  if (!at::isFloatingType(hessian.scalar_type())) {
    throw ConfigError(where, "the Hessian must be floating point", "float32 or float64",
                      c10::toString(hessian.scalar_type()));
  }
  if (!at::isfinite(weight).all().item<bool>()) {
    throw NumericError(where, "weight holds NaN or Inf", "finite values",
                       std::to_string((~at::isfinite(weight)).sum().item<std::int64_t>()) + " non-finite values");
  }
}

}  // namespace

PreparedLayer prepare_layer(const at::Tensor& weight, const at::Tensor& hessian, const GptqConfig& config,
                            const std::string& layer, std::int64_t calib_tokens, c10::Device device,
                            at::ScalarType dtype) {
  PreparedLayer p;
  p.start = std::chrono::steady_clock::now();
  check_inputs(weight, hessian, layer);
  const std::int64_t k = weight.size(1);
  config.validate(k, layer);
  const std::int64_t group = config.group_size == -1 ? k : config.group_size;

  at::Tensor w = weight.to(device, dtype).clone();
  // H stays in at least its own precision until factorized: the float64 retry must see what was accumulated.
  at::Tensor h = hessian.to(device, at::promote_types(hessian.scalar_type(), dtype)).clone();
  p.context = HessianContext{layer, calib_tokens, 0};
  check_hessian_usable(h, p.context);

  // Step 2: the per-channel grid is found on the whole matrix before dead columns are zeroed.
  p.channel_grid = find_grid(w, config.bits, config.sym);

  // Step 3: dead columns (no activation ever reached them) get H = 1 on the diagonal and weight 0.
  const at::Tensor dead = h.diagonal() == 0;
  p.context.dead_columns = dead.sum().item<std::int64_t>();
  h.diagonal().masked_fill_(dead, 1);
  w.masked_fill_(dead.unsqueeze(0), 0);

  // Step 4: static groups take their grids from the unpermuted columns.
  if (config.static_groups) p.static_grids = find_group_grids(w, group, config.bits, config.sym);

  // Step 5: act-order. A stable sort, so equal diagonal entries keep their column order (torch.argsort is not
  // stable, so the published code may order ties differently).
  p.perm = at::arange(k, at::TensorOptions().dtype(at::kLong).device(device));
  if (config.desc_act) {
    p.perm = std::get<1>(at::sort(h.diagonal(), /*stable=*/true, /*dim=*/0, /*descending=*/true));
    w = w.index({Slice(), p.perm});
    h = h.index({p.perm}).index({Slice(), p.perm});
  }
  p.invperm = at::argsort(p.perm);
  p.w = w.contiguous();

  // Steps 6-7: damping and the upper Cholesky factor of H^-1.
  p.factorization = factor_inverse_hessian(h, dtype, config.damping, p.context);
  p.hinv = p.factorization.hinv_upper.to(dtype).contiguous();
  return p;
}

GptqResult finish_layer(const PreparedLayer& p, const GptqConfig& config, const at::Tensor& q,
                        const at::Tensor& codes, const at::Tensor& losses, const std::vector<at::Tensor>& scales,
                        const std::vector<at::Tensor>& zeros) {
  const std::int64_t k = p.w.size(1);
  const bool grouped = config.group_size != -1;
  const std::int64_t group = grouped ? config.group_size : k;
  GptqResult r;
  if (!grouped) {
    r.scales = p.channel_grid.scale;
    r.zeros = p.channel_grid.zero;
  } else if (config.static_groups) {
    // Groups in their own (column block) order, matching g_idx = k / G. (AutoGPTQ appends them in processing
    // order, which under act-order does not match its own g_idx.)
    r.scales = p.static_grids.scale;
    r.zeros = p.static_grids.zero;
  } else {
    r.scales = at::cat(scales, 1);
    r.zeros = at::cat(zeros, 1);
  }
  const at::Tensor columns = at::arange(k, p.perm.options());
  const bool act_order_groups = config.desc_act && grouped && !config.static_groups;
  r.g_idx = (act_order_groups ? p.invperm : columns).div(group, "floor").to(at::kInt);
  r.q = q.index({at::indexing::Slice(), p.invperm});
  r.codes = codes.index({at::indexing::Slice(), p.invperm});
  r.losses = losses.sum(0).index({p.invperm}) * p.factorization.h_scale;  // Factorization::hinv_upper says why

  LayerSummary& s = r.summary;
  s.name = p.context.layer;
  s.bits = config.bits;
  s.group_size = config.group_size;
  s.desc_act = config.desc_act;
  s.damp_initial = config.damping.percdamp;
  s.damp_final = p.factorization.percdamp;
  s.attempts = p.factorization.attempts;
  s.float64_retry = p.factorization.float64_retry;
  s.dead_columns = p.context.dead_columns;
  s.calib_tokens = p.context.calib_tokens;
  s.min_pivot = p.factorization.min_pivot;
  s.loss = r.losses.sum().item<double>();  // also waits for device work, so `seconds` covers all of it
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - p.start).count();
  return r;
}

}  // namespace qh::gptq
