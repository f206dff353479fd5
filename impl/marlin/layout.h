// The Marlin weight layout, CPU reference (FORMATS.md 3.1, IST-DASLab marlin/__init__.py Layer.pack and _get_perms;
// AutoGPTQ's qlinear_marlin.py carries the same code): 4-bit codes in 16x16 tiles, each 1024-value chunk of a tile
// row reordered by the 1024-entry weight permutation (with the [0,2,4,6,1,3,5,7] interleave inside each 8-tuple),
// then 8 values per int32, lowest nibble first; scales reordered by the 64-entry grouped or 32-entry per-channel
// permutation. Written to be read: it is the oracle for the GPU repack.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace qh::marlin {

// The permutations exactly as _get_perms builds them.
const std::array<int, 1024>& weight_perm();
const std::array<int, 64>& scale_perm();
const std::array<int, 32>& scale_perm_single();

// codes (K, N) integers in [0, 15] (q = round(w / s) + 8, the GPTQ symmetric 4-bit code) -> B (K/16, 2N) int32.
// ShapeError naming `layer` unless K % 16 == 0 and N % 64 == 0 (a tile row must be whole 1024-value chunks).
at::Tensor pack_weights(const at::Tensor& codes, const std::string& layer);
// The inverse: B (K/16, 2N) -> codes (K, N) int32.
at::Tensor unpack_weights(const at::Tensor& b, std::int64_t k, std::int64_t n, const std::string& layer);

// Scales (groups, N) -> Marlin order. `grouped` (more than one group): each 64 consecutive values by scale_perm,
// else each 32 by scale_perm_single (Layer.pack step 3).
at::Tensor permute_scales(const at::Tensor& scales, bool grouped, const std::string& layer);
at::Tensor unpermute_scales(const at::Tensor& s, bool grouped, const std::string& layer);

}  // namespace qh::marlin
