// The Marlin GEMM on a CUDA device, checked: y = x W + bias with W in the Marlin layout (kernels/marlin_gemm.cu).
// Every rule the kernel relies on is checked here first and refused with the layer, the rule and the numbers, so
// no accepted input reaches the kernel out of bounds.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

#include "impl/marlin/marlin_linear.h"

namespace qh::marlin {

struct GemmOptions {
  // NumericError when the input holds Inf/NaN (checked before the launch) or an output is not finite (an fp16
  // overflow, reported rather than returned); costs two reductions and a device sync. Benchmarks turn it off.
  bool check_finite = true;
  int config = -1;  // a kernel configuration index (kernels::marlin_gemm_config) instead of the plan's; tests use it
  // stream-K grid size instead of the plan's (1 .. kernels::marlin_gemm_max_blocks; whole clusters of a clustered
  // configuration, whose column tiles must pair up: kernels::marlin_gemm_config_fits)
  int blocks = 0;
};

// The tensors of one Marlin layer, as MarlinLinear holds them (perm and bias undefined when absent).
struct MarlinWeights {
  MarlinSpec spec;
  at::Tensor b, s, perm, bias;
};

// x (..., K) fp16 or bf16, contiguous, on the device of the weights, with s in x's dtype -> (..., N) in x's dtype.
// On a CUDA device the kernel; on the CPU its reference (dequantize below, float32 products and sums, the bias, one
// rounding), which also checks that perm is a permutation. Refused before any launch: a CUDA tensor in a build
// without CUDA, other devices and dtypes, wrong or non-contiguous shapes, misaligned data, no rows, unsupported
// group sizes, an act-order layer without perm (and the reverse).
at::Tensor gemm(const at::Tensor& x, const MarlinWeights& w, const std::string& layer, const GemmOptions& options = {});

// W (K, N) in the original input order, in s's dtype on B's device, padding sliced off: s (q - 8) rounded once,
// what the kernel multiplies. Assumes tensors of the layout's shapes (gemm checks them).
at::Tensor dequantize(const MarlinWeights& w);

}  // namespace qh::marlin
