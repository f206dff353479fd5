// TORCH_LIBRARY(qharness, m): the operators, their schemas and their kernels, in one place (STYLE.md, vLLM's
// torch_bindings.cpp). Every op is functional: no argument is mutated or aliased by an output, so the schemas carry
// no alias annotations and torch.compile may reorder and fuse around them. `layer` is the name errors use ("" = the
// op's name). The CPU and CUDA keys share one function (ops.cpp; the library chooses the device path), the Meta
// key has the shape functions (meta.cpp). docs/ops.md lists each op with its arguments and errors.
#include <torch/library.h>

#include "impl/ops/ops.h"

TORCH_LIBRARY(qharness, m) {
  // GPTQ of weight (N, K) with the Hessian (K, K) of its inputs: the reference (CPU; float64=True for float64) or
  // the optimized CUDA path (float32). codes (N, K) int32 in [0, 2^bits - 1]; scales and zeros (N, groups) in the
  // working dtype (float32, or float64), zeros integer-valued; g_idx (K,) int32; summary (7,) float64 = damp_initial,
  // damp_final, attempts, float64_retry, dead_columns, min_pivot, loss. A non-positive-definite H is damped up by
  // damp_auto_increment until it factorizes (0: no escalation); an unrecoverable one is a NumericError.
  m.def("gptq_quantize(Tensor weight, Tensor hessian, int bits=4, int group_size=128, bool sym=True, "
        "bool desc_act=False, bool static_groups=False, float damp_percent=0.01, float damp_auto_increment=0.0025, "
        "bool float64=False, str layer=\"\") -> (Tensor codes, Tensor scales, Tensor zeros, Tensor g_idx, "
        "Tensor summary)");
  // GPTQ QuantLinear buffers from codes (N, K), zeros (N, groups), scales (N, groups) and g_idx (K,):
  // qweight (K * bits / 32, N), qzeros (groups, N * bits / 32) int32 in format "gptq" (v1: zero - 1 stored; a zero of
  // 0 is refused, use gptq_v2) or "gptq_v2"; scales (groups, N) in scale_dtype (default float16).
  m.def("pack(Tensor codes, Tensor zeros, Tensor scales, Tensor g_idx, int bits=4, int group_size=128, "
        "bool sym=True, str format=\"gptq\", ScalarType? scale_dtype=None, str layer=\"\") -> (Tensor qweight, "
        "Tensor qzeros, Tensor scales)");
  // The inverse of pack for the integers: codes (K, N) and zero points (groups, N) int32 (v1: stored + 1).
  m.def("unpack(Tensor qweight, Tensor qzeros, int bits=4, int group_size=128, str format=\"gptq\", "
        "str layer=\"\") -> (Tensor codes, Tensor zeros)");
  // W (K, N) = scales[g_idx[k]] (q - z[g_idx[k]]) in float32, rounded once to scales' dtype; the buffers are
  // checked first (dtypes, shapes, g_idx range, finite scales, g_idx = k / group_size unless desc_act).
  m.def("dequantize(Tensor qweight, Tensor qzeros, Tensor scales, Tensor g_idx, int bits=4, int group_size=128, "
        "bool desc_act=False, str format=\"gptq\", str layer=\"\") -> Tensor");
  // 4-bit qweight (K/8, N) -> Marlin B (K/16, 2N) int32, AutoGPTQ's Marlin layout; perm (K,) int32 gathers the
  // input rows first (act-order: argsort of g_idx). K % 16 == 0 and N % 64 == 0 (pad first: docs/marlin.md).
  m.def("marlin_repack(Tensor qweight, Tensor? perm, int size_k, int size_n, str layer=\"\") -> Tensor");
  // y (..., N) = x (..., K) W + bias with W in the Marlin layout: B (K'/16, 2N') int32 and s (groups, N') in x's
  // dtype (fp16/bf16), K' and N' the padded extents; perm (K,) for act-order layers; bias (N,). CUDA: the Marlin
  // kernel (float32 accumulation); CPU: its reference. check_finite: NaN/Inf in x and an overflowing output are a
  // NumericError (costs a device sync; benchmarks pass False).
  m.def("marlin_gemm(Tensor x, Tensor B, Tensor s, Tensor? perm, Tensor? bias, int size_k, int size_n, "
        "int group_size=-1, bool check_finite=True, str layer=\"\") -> Tensor");
}

namespace {

// The CPU and the CUDA key run the same functions: the library picks the device path from the tensors.
void device_kernels(torch::Library& m) {
  m.impl("gptq_quantize", &qh::ops::gptq_quantize);
  m.impl("pack", &qh::ops::pack);
  m.impl("unpack", &qh::ops::unpack);
  m.impl("dequantize", &qh::ops::dequantize);
  m.impl("marlin_repack", &qh::ops::marlin_repack);
  m.impl("marlin_gemm", &qh::ops::marlin_gemm);
}

}  // namespace

TORCH_LIBRARY_IMPL(qharness, CPU, m) { device_kernels(m); }

TORCH_LIBRARY_IMPL(qharness, CUDA, m) { device_kernels(m); }

TORCH_LIBRARY_IMPL(qharness, Meta, m) {
  m.impl("gptq_quantize", &qh::ops::gptq_quantize_meta);
  m.impl("pack", &qh::ops::pack_meta);
  m.impl("unpack", &qh::ops::unpack_meta);
  m.impl("dequantize", &qh::ops::dequantize_meta);
  m.impl("marlin_repack", &qh::ops::marlin_repack_meta);
  m.impl("marlin_gemm", &qh::ops::marlin_gemm_meta);
}
