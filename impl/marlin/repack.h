// GPTQ qweight -> Marlin B (FORMATS.md 3.1, 3.2, 3.4): on a CUDA device by the one-pass repack kernel, on the CPU by
// unpacking the codes and running the reference layout, so the two can be compared bit for bit.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace qh::marlin {

// qweight (K/8, N) int32 of a 4-bit GPTQ layer on the CPU or a CUDA device; `perm` (K,) int32 on the same device,
// or undefined: for act-order, the order in which rows go into the tiles (argsort of g_idx). Returns B (K/16, 2N)
// int32 on qweight's device. ShapeError naming `layer` for shapes Marlin cannot tile (K % 16, N % 64): to_marlin
// pads qweight (and perm) to whole tiles before calling this.
at::Tensor repack_gptq_qweight(const at::Tensor& qweight, const at::Tensor& perm, std::int64_t k, std::int64_t n,
                               const std::string& layer);

}  // namespace qh::marlin
