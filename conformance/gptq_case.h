// Inputs and independent oracles shared by the GPTQ suites: calibration activations, Hessians, and a plain-loop
// round-to-nearest quantizer written from FORMATS.md 2.3 without impl/gptq, to compare GPTQ against where the
// answer is known in closed form.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "impl/gptq/reference.h"

namespace qh::testing {

// (tokens, k) activations with correlated columns (x = z A, A random), so H has structure GPTQ can use.
inline at::Tensor correlated_activations(std::int64_t tokens, std::int64_t k, std::uint64_t seed) {
  at::manual_seed(seed);
  const at::Tensor mix = at::randn({k, k}, at::kDouble) / std::sqrt(double(k)) + at::eye(k, at::kDouble);
  return at::randn({tokens, k}, at::kDouble).matmul(mix);
}

// H = 2/n X^T X for n = 1 sample of tokens (FORMATS.md 2.1 with one batch).
inline at::Tensor hessian_of(const at::Tensor& x) { return 2.0 * x.t().matmul(x); }

// Round-to-nearest with the GPTQ min-max grid, per row, over the columns listed in `cols` (one group), plain
// loops in double. Returns codes for those columns, row-major (rows x cols.size()).
inline std::vector<int> rtn_codes(const at::Tensor& w_double, const std::vector<std::int64_t>& cols, int bits,
                                  bool sym) {
  const auto w = w_double.accessor<double, 2>();
  const int maxq = (1 << bits) - 1;
  std::vector<int> out;
  for (std::int64_t r = 0; r < w_double.size(0); ++r) {
    double xmin = 0, xmax = 0;
    for (auto c : cols) {
      xmin = std::min(xmin, w[r][c]);
      xmax = std::max(xmax, w[r][c]);
    }
    if (sym) {
      xmax = std::max(std::abs(xmin), xmax);
      if (xmin < 0) xmin = -xmax;
    }
    if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
    const double scale = (xmax - xmin) / maxq;
    const double zero = sym ? (maxq + 1) / 2 : std::nearbyint(-xmin / scale);
    for (auto c : cols) {
      const double v = std::nearbyint(w[r][c] / scale) + zero;  // nearbyint: round half to even, like torch.round
      out.push_back(int(std::clamp(v, 0.0, double(maxq))));
    }
  }
  return out;
}

// Codes of `codes` (int32, rows x K) at the listed columns, in the same order as rtn_codes.
inline std::vector<int> codes_at(const at::Tensor& codes, const std::vector<std::int64_t>& cols) {
  const auto c = codes.accessor<int, 2>();
  std::vector<int> out;
  for (std::int64_t r = 0; r < codes.size(0); ++r) {
    for (auto col : cols) out.push_back(c[r][col]);
  }
  return out;
}

// scales[:, g_idx] * (codes - zeros[:, g_idx]): what a result's own codes and grids say its Q is.
inline at::Tensor dequantized(const gptq::GptqResult& r) {
  const at::Tensor g = r.g_idx.to(at::kLong);
  const auto all = at::indexing::Slice();
  return r.scales.index({all, g}) * (r.codes.to(r.scales.scalar_type()) - r.zeros.index({all, g}));
}

}  // namespace qh::testing
