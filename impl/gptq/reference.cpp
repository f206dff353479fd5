#include "impl/gptq/reference.h"

#include <ATen/ATen.h>

#include <chrono>
#include <vector>

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"
#include "impl/gptq/damping.h"
#include "impl/gptq/quantizer.h"

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
  if (!at::isfinite(weight).all().item<bool>()) {
    throw NumericError(where, "weight holds NaN or Inf", "finite values",
                       std::to_string((~at::isfinite(weight)).sum().item<std::int64_t>()) + " non-finite values");
  }
}

}  // namespace

GptqResult gptq_reference(const at::Tensor& weight, const at::Tensor& hessian, const GptqConfig& config,
                          const std::string& layer, std::int64_t calib_tokens) {
  const auto start = std::chrono::steady_clock::now();
  check_inputs(weight, hessian, layer);
  const std::int64_t n = weight.size(0), k = weight.size(1);
  config.validate(k, layer);
  const auto dtype = config.float64 ? at::kDouble : at::kFloat;
  const int maxq = config.maxq();
  const std::int64_t group = config.group_size == -1 ? k : config.group_size;
  const bool grouped = config.group_size != -1;

  at::Tensor w = weight.to(at::kCPU, dtype).clone();
  // H stays in at least its own precision until factorized: the float64 retry must see what was accumulated.
  at::Tensor h = hessian.to(at::kCPU, at::promote_types(hessian.scalar_type(), dtype)).clone();
  HessianContext ctx{layer, calib_tokens, 0};
  check_hessian_usable(h, ctx);

  // Step 2: the per-channel grid is found on the whole matrix before dead columns are zeroed.
  QuantGrid grid = find_grid(w, config.bits, config.sym);

  // Step 3: dead columns (no activation ever reached them) get H = 1 on the diagonal and weight 0.
  const at::Tensor dead = h.diagonal() == 0;
  ctx.dead_columns = dead.sum().item<std::int64_t>();
  h.diagonal().masked_fill_(dead, 1);
  w.masked_fill_(dead.unsqueeze(0), 0);

  // Step 4: static groups take their grids from the unpermuted columns.
  std::vector<QuantGrid> static_grids;
  if (config.static_groups) {
    for (std::int64_t c = 0; c < k; c += group) {
      static_grids.push_back(find_grid(w.index({Slice(), Slice(c, c + group)}), config.bits, config.sym));
    }
  }

  // Step 5: act-order. A stable sort, so equal diagonal entries keep their column order (torch.argsort is not
  // stable, so the published code may order ties differently).
  at::Tensor perm = at::arange(k, at::kLong);
  if (config.desc_act) {
    perm = std::get<1>(at::sort(h.diagonal(), /*stable=*/true, /*dim=*/0, /*descending=*/true));
    w = w.index({Slice(), perm});
    h = h.index({perm}).index({Slice(), perm});
  }
  const at::Tensor invperm = at::argsort(perm);

  // Steps 6-7: damping and the upper Cholesky factor of H^-1.
  const Factorization fact = factor_inverse_hessian(h, dtype, config.damping, ctx);
  const at::Tensor hinv = fact.hinv_upper.to(dtype);

  // Step 8: the blocked column loop with lazy batch updates.
  at::Tensor q = at::zeros_like(w);
  at::Tensor codes = at::zeros({n, k}, at::kInt);
  at::Tensor losses = at::zeros_like(w);
  std::vector<at::Tensor> scales, zeros;
  const auto perm_of = perm.accessor<std::int64_t, 1>();
  for (std::int64_t i1 = 0; i1 < k; i1 += config.block_size) {
    const std::int64_t i2 = std::min(i1 + config.block_size, k), count = i2 - i1;
    at::Tensor w1 = w.index({Slice(), Slice(i1, i2)}).clone();
    at::Tensor err1 = at::zeros_like(w1);
    const at::Tensor hinv1 = hinv.index({Slice(i1, i2), Slice(i1, i2)});
    for (std::int64_t i = 0; i < count; ++i) {
      const std::int64_t col = i1 + i;
      if (grouped && config.static_groups) {
        grid = static_grids[std::size_t((config.desc_act ? perm_of[col] : col) / group)];
      } else if (grouped && col % group == 0) {
        // Reads W, not W1: this block's in-loop updates are not in it yet (the published code's behaviour).
        grid = find_grid(w.index({Slice(), Slice(col, col + group)}), config.bits, config.sym);
        scales.push_back(grid.scale);
        zeros.push_back(grid.zero);
      }
      const at::Tensor wcol = w1.index({Slice(), Slice(i, i + 1)});
      const at::Tensor code = quantize_codes(wcol, grid, maxq);
      const at::Tensor qcol = dequantize_codes(code, grid);
      const at::Tensor d = hinv1.index({i, i});
      q.index_put_({Slice(), Slice(col, col + 1)}, qcol);
      codes.index_put_({Slice(), Slice(col, col + 1)}, code.to(at::kInt));
      losses.index_put_({Slice(), Slice(col, col + 1)}, (wcol - qcol).square() / d.square() / 2);
      const at::Tensor err = (wcol - qcol) / d;
      w1.index({Slice(), Slice(i, count)}).sub_(err.matmul(hinv1.index({Slice(i, i + 1), Slice(i, count)})));
      err1.index_put_({Slice(), Slice(i, i + 1)}, err);
    }
    w.index({Slice(), Slice(i2, k)}).sub_(err1.matmul(hinv.index({Slice(i1, i2), Slice(i2, k)})));
  }

  GptqResult r;
  if (!grouped) {
    scales = {grid.scale};
    zeros = {grid.zero};
  } else if (config.static_groups) {
    // Groups in their own (column block) order, matching g_idx = k / G. (AutoGPTQ appends them in processing
    // order, which under act-order does not match its own g_idx.)
    for (const QuantGrid& g : static_grids) {
      scales.push_back(g.scale);
      zeros.push_back(g.zero);
    }
  }
  r.scales = at::cat(scales, 1);
  r.zeros = at::cat(zeros, 1);
  const at::Tensor columns = at::arange(k, at::kLong);
  r.g_idx = (config.desc_act && grouped && !config.static_groups ? invperm : columns).div(group, "floor").to(at::kInt);
  r.q = q.index({Slice(), invperm});
  r.codes = codes.index({Slice(), invperm});
  r.losses = losses.sum(0).index({invperm});

  LayerSummary& s = r.summary;
  s.name = layer;
  s.bits = config.bits;
  s.group_size = config.group_size;
  s.desc_act = config.desc_act;
  s.damp_initial = config.damping.percdamp;
  s.damp_final = fact.percdamp;
  s.attempts = fact.attempts;
  s.float64_retry = fact.float64_retry;
  s.dead_columns = ctx.dead_columns;
  s.calib_tokens = calib_tokens;
  s.min_pivot = fact.min_pivot;
  s.loss = r.losses.sum().item<double>();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace qh::gptq
