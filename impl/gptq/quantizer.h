// The GPTQ quantization grid: min-max per row, symmetric or asymmetric, IST-DASLab gptq quant.py `find_params`
// (perchannel, weight=True) and `quantize`, which AutoGPTQ copies (FORMATS.md 2.3).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace qh::gptq {

struct QuantGrid {
  at::Tensor scale;  // (N, 1)
  at::Tensor zero;   // (N, 1), integer-valued
};

// Grid for each row of `w` (N, columns). sym: zero = (maxq + 1) / 2 and, where the row has a negative minimum,
// xmin = -max(|xmin|, xmax); an all-non-negative row keeps xmin = 0 (the reference's behaviour). A row of zeros
// gets the range [-1, 1] so its scale is never 0.
QuantGrid find_grid(const at::Tensor& w, int bits, bool sym);

// Grids for consecutive groups of `group` columns of `w` (N, ngroups * group): scale and zero are (N, ngroups),
// column g the grid find_grid gives for columns [g * group, (g + 1) * group).
QuantGrid find_group_grids(const at::Tensor& w, std::int64_t group, int bits, bool sym);

// Integer codes clamp(round(x / scale) + zero, 0, maxq) (round half to even, like torch.round), x (N, c).
at::Tensor quantize_codes(const at::Tensor& x, const QuantGrid& grid, int maxq);
// The dequantized value scale * (code - zero).
at::Tensor dequantize_codes(const at::Tensor& codes, const QuantGrid& grid);

}  // namespace qh::gptq
