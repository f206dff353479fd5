#include "impl/gptq/reference.h"

#include <ATen/ATen.h>

#include <vector>

#include "impl/gptq/prepare.h"

namespace qh::gptq {

namespace {

using at::indexing::Slice;

}  // namespace

GptqResult gptq_reference(const at::Tensor& weight, const at::Tensor& hessian, const GptqConfig& config,
                          const std::string& layer, std::int64_t calib_tokens, c10::Device device) {
  const auto dtype = config.float64 ? at::kDouble : at::kFloat;
  PreparedLayer p = prepare_layer(weight, hessian, config, layer, calib_tokens, device, dtype);
  at::Tensor& w = p.w;
  const at::Tensor& hinv = p.hinv;
  const std::int64_t n = w.size(0), k = w.size(1);
  const int maxq = config.maxq();
  const bool grouped = config.group_size != -1;
  const std::int64_t group = grouped ? config.group_size : k;

  // Step 8: the blocked column loop with lazy batch updates.
  at::Tensor q = at::zeros_like(w);
  at::Tensor codes = at::zeros({n, k}, w.options().dtype(at::kInt));
  at::Tensor losses = at::zeros_like(w, w.options().dtype(at::kDouble));  // GptqResult::losses says why
  std::vector<at::Tensor> scales, zeros;
  QuantGrid grid = p.channel_grid;
  const at::Tensor perm = p.perm.cpu();
  const auto perm_of = perm.accessor<std::int64_t, 1>();
  for (std::int64_t i1 = 0; i1 < k; i1 += config.block_size) {
    const std::int64_t i2 = std::min(i1 + config.block_size, k), count = i2 - i1;
    at::Tensor w1 = w.index({Slice(), Slice(i1, i2)}).clone();
    at::Tensor err1 = at::zeros_like(w1);
    const at::Tensor hinv1 = hinv.index({Slice(i1, i2), Slice(i1, i2)});
    for (std::int64_t i = 0; i < count; ++i) {
      const std::int64_t col = i1 + i;
      if (grouped && config.static_groups) {
        const std::int64_t g = (config.desc_act ? perm_of[col] : col) / group;
        grid = {p.static_grids.scale.index({Slice(), Slice(g, g + 1)}),
                p.static_grids.zero.index({Slice(), Slice(g, g + 1)})};
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
      const at::Tensor err = (wcol - qcol) / d;
      losses.index_put_({Slice(), Slice(col, col + 1)}, err.to(at::kDouble).square() / 2);  // (w - q)^2 / d^2 / 2
      w1.index({Slice(), Slice(i, count)}).sub_(err.matmul(hinv1.index({Slice(i, i + 1), Slice(i, count)})));
      err1.index_put_({Slice(), Slice(i, i + 1)}, err);
    }
    w.index({Slice(), Slice(i2, k)}).sub_(err1.matmul(hinv.index({Slice(i1, i2), Slice(i2, k)})));
  }
  return finish_layer(p, config, q, codes, losses, scales, zeros);
}

}  // namespace qh::gptq
