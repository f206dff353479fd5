// MarlinLinear: a 4-bit symmetric GPTQ layer in the Marlin layout, as AutoGPTQ's Marlin QuantLinear registers it
// (FORMATS.md 3.2): buffers B (K/16, 2N) int32 and s (groups, N), plus `bias` exactly when the source layer had one.
// Act-order layers, which AutoGPTQ's format cannot hold, add `perm` (K,) int32: the input order of B's rows
// (argsort of g_idx, as vLLM's gptq_marlin does; FORMATS.md 3.4), so that row block g of B uses scale row g.
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
  std::int64_t in_features = 0;   // K
  std::int64_t out_features = 0;  // N
  int group_size = -1;            // -1: per-channel (one scale row)
  bool act_order = false;         // `perm` present

  std::int64_t groups() const { return group_size == -1 ? 1 : in_features / group_size; }
  // ShapeError / ConfigError naming `layer` with the rule and the numbers for what this layout cannot hold.
  void validate(const std::string& layer) const;
};

class MarlinLinear : public model::Module {
 public:
  // Buffers with the shapes of `spec` on options.device(); s and bias in options.dtype().
  MarlinLinear(const MarlinSpec& spec, bool bias, const at::TensorOptions& options);
  const MarlinSpec& spec() const { return spec_; }

  // W (K, N) in the original input order, in s's dtype: the CPU reference of what the GEMM computes with.
  at::Tensor dequantize() const;
  // y = x W + bias (reference: dequantize, then one matmul on x's device).
  at::Tensor forward(const at::Tensor& x) const override;

 private:
  MarlinSpec spec_;
};

// QuantLinear -> MarlinLinear, built directly on `device` (never on meta: the AutoGPTQ #551 bias bug) with the
// source's bias (dtype kept) and scales. Refuses, with the rule and the numbers: bits != 4, asymmetric zero points
// (Marlin's GPTQ path has none: vLLM maps only (4, sym) to uint4b8), group sizes other than -1, 32, 64, 128 or K,
// act-order groups of unequal size, shapes that do not tile (K % 16, N % 64), and a source still on meta.
std::unique_ptr<MarlinLinear> to_marlin(const quant_linear::QuantLinear& source, c10::Device device,
                                        const std::string& layer);

}  // namespace qh::marlin
