// MarlinLinear: a 4-bit symmetric GPTQ layer in the Marlin layout, as AutoGPTQ's Marlin QuantLinear registers it
// (FORMATS.md 3.2): buffers B (K/16, 2N) int32 and s (groups, N), plus `bias` exactly when the source layer had one.
// Act-order layers, which AutoGPTQ's format cannot hold, add `perm` (K,) int32: the input order of B's rows
// (argsort of g_idx, as vLLM's gptq_marlin does; FORMATS.md 3.4), so that row block g of B uses scale row g.
// Shapes that do not tile are stored zero-padded (MarlinSpec::k_padded / n_padded, docs/marlin.md): B and s use the
// padded extents; perm and bias keep K and N.
// The `workspace` buffer of the kernel is not state and is not stored.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "impl/model/module.h"
#include "impl/quant_linear/quant_linear.h"

namespace qh::marlin {

struct MarlinSpec {
  static constexpr std::int64_t round_up(std::int64_t x, std::int64_t to) { return (x + to - 1) / to * to; }

  std::int64_t in_features = 0;   // K
  std::int64_t out_features = 0;  // N
  int group_size = -1;            // -1: per-channel (one scale row)
  bool act_order = false;         // `perm` present

  // Scale rows: one per group of group_size inputs, the last one possibly partial (GPTQ's ceil(K / G)).
  std::int64_t groups() const { return group_size == -1 ? 1 : (in_features + group_size - 1) / group_size; }
  // The stored (padded) extents: B is (k_padded / 16, 2 n_padded) and s is (groups, n_padded). Shapes real models
  // have (N = 2736, a tensor-parallel K = 320 with group 128) are zero-padded up to whole tiles and whole groups:
  // padded rows and columns hold code 8 (weight 0) and padded scale columns hold 0 (docs/marlin.md).
  std::int64_t k_padded() const { return round_up(in_features, group_size == -1 ? 16 : group_size); }
  std::int64_t n_padded() const { return round_up(out_features, 64); }
  // The group sizes Marlin's kernels take: -1 (per-channel), 32, 64, 128 (vLLM's marlin_utils list, FORMATS.md 1.7).
  bool group_size_supported() const {
    return group_size == -1 || group_size == 32 || group_size == 64 || group_size == 128;
  }
  // ShapeError / ConfigError naming `layer` with the rule and the numbers for what padding cannot fix: K or N not
  // positive, K not a multiple of 8 (no GPTQ 4-bit qweight has such a K), a group size that is neither -1 nor
  // positive. Which group sizes Marlin supports is to_marlin's check.
  void validate(const std::string& layer) const;
};

// The Marlin spec of a GPTQ layer: a single group (group_size -1, or >= K: one scale row) is per-channel (-1), as
// vLLM's marlin_permute_scales treats it, so k_padded rounds K to 16 rather than to the group size.
MarlinSpec marlin_spec_of(const quant_linear::QuantSpec& spec);

class MarlinLinear : public model::Module {
 public:
  // Buffers with the padded shapes of `spec` on options.device(); s and bias in options.dtype(). `layer` (the
  // qualified name) is what forward's errors name.
  MarlinLinear(const MarlinSpec& spec, bool bias, const at::TensorOptions& options, std::string layer = "");
  const MarlinSpec& spec() const { return spec_; }

  // W (K, N) in the original input order, in s's dtype, padding sliced off: the CPU reference of what the GEMM
  // computes with.
  at::Tensor dequantize() const;
  // y = x W + bias. On a CUDA device with fp16/bf16 scales: the Marlin GEMM (impl/marlin/gemm.h; x is cast to s's
  // dtype and made contiguous; an fp16 overflow is reported by layer). Elsewhere: the reference, dequantize then
  // one matmul on x's device.
  at::Tensor forward(const at::Tensor& x) const override;

 private:
  MarlinSpec spec_;
  std::string layer_;
};

// QuantLinear -> MarlinLinear, built directly on `device` (never on meta: the AutoGPTQ #551 bias bug) with the
// source's bias (dtype kept) and scales, zero-padded to whole tiles and groups. Refuses, with the rule and the
// numbers: bits != 4, asymmetric zero points (Marlin's GPTQ path has none: vLLM maps only (4, sym) to uint4b8),
// group sizes other than -1, 32, 64, 128 or K, act-order groups other than group_size columns each with a smaller
// last one, what MarlinSpec::validate refuses, and a source still on meta.
std::unique_ptr<MarlinLinear> to_marlin(const quant_linear::QuantLinear& source, c10::Device device,
                                        const std::string& layer);

}  // namespace qh::marlin
