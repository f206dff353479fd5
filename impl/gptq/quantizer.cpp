#include "impl/gptq/quantizer.h"

#include <ATen/ATen.h>

namespace qh::gptq {

QuantGrid find_grid(const at::Tensor& w, int bits, bool sym) {
  const double maxq = double((1 << bits) - 1);
  const at::Tensor zeros = at::zeros({w.size(0)}, w.options());
  at::Tensor xmin = at::minimum(std::get<0>(w.min(1)), zeros);
  at::Tensor xmax = at::maximum(std::get<0>(w.max(1)), zeros);
  if (sym) {
    xmax = at::maximum(xmin.abs(), xmax);
    xmin = at::where(xmin < 0, -xmax, xmin);
  }
  const at::Tensor empty_row = (xmin == 0) & (xmax == 0);
  xmin = at::where(empty_row, -at::ones_like(xmin), xmin);
  xmax = at::where(empty_row, at::ones_like(xmax), xmax);
  QuantGrid grid;
  // Divide by a tensor, not a scalar: ATen's CUDA kernel multiplies by the reciprocal of a scalar divisor, which is
  // one ulp off now and then; the scale then differs between devices, a w / scale tie rounds the other way and the
  // error feedback carries the flip along the row. The published code divides by a tensor (quantizer.maxq).
  grid.scale = ((xmax - xmin) / at::full_like(xmax, maxq)).unsqueeze(1);
  grid.zero = sym ? at::full_like(grid.scale, (maxq + 1) / 2) : at::round(-xmin.unsqueeze(1) / grid.scale);
  return grid;
}

QuantGrid find_group_grids(const at::Tensor& w, std::int64_t group, int bits, bool sym) {
  const std::int64_t n = w.size(0), groups = w.size(1) / group;
  QuantGrid grid = find_grid(w.reshape({n * groups, group}), bits, sym);
  return {grid.scale.view({n, groups}), grid.zero.view({n, groups})};
}

at::Tensor quantize_codes(const at::Tensor& x, const QuantGrid& grid, int maxq) {
  return at::clamp(at::round(x / grid.scale) + grid.zero, 0, maxq);
}

at::Tensor dequantize_codes(const at::Tensor& codes, const QuantGrid& grid) { return grid.scale * (codes - grid.zero); }

}  // namespace qh::gptq
