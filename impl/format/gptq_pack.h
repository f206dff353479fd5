// GPTQ bit packing, torch-free: integer codes <-> int32 words of qweight (packed along in_features, K) and qzeros
// (packed along out_features, N), for 2, 3, 4 and 8 bits, and the v1 ("gptq", zero stored minus one) <-> v2
// ("gptq_v2") zero-point conversion. Facts: FORMATS.md 1.2, 1.3, 1.5 (AutoGPTQ qlinear_cuda.py pack/forward).
//
// One rule covers every width: along the packed dimension, value i occupies bits [i*b, i*b + b) of a little-endian
// bit stream cut into 32-bit words, so the lowest index sits in the lowest bits. For b = 2, 4, 8 no value crosses a
// word; for b = 3 values 10 and 21 of each 32 straddle two words exactly as AutoGPTQ's 3-word layout has them.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qh::format {

// The fewest values of `bits` that fill whole int32 words: 32 / bits (16, 8, 4 at 2, 4, 8 bits: one word), and 32 at
// 3 bits (three words, FORMATS.md 1.3). A packed dimension is whole exactly when it is a multiple of this, so qweight
// has K * bits / 32 rows and qzeros N * bits / 32 columns (GPTQModel's K / pack_factor * bits; AutoGPTQ's
// K // 32 * bits agrees only when K % 32 == 0). ConfigError (naming `tensor`) for other widths.
std::int64_t pack_multiple(int bits, const std::string& tensor = "");

// Words needed for `count` values of `bits` along the packed dimension (count * bits / 32); throws ShapeError
// (naming `tensor`) when count is not a positive multiple of pack_multiple(bits).
std::int64_t packed_words(std::int64_t count, int bits, const std::string& tensor);

// codes: (K, N) row-major, each in [0, 2^bits). Returns qweight (K * bits / 32, N) row-major.
std::vector<std::uint32_t> pack_qweight(std::span<const std::uint8_t> codes, std::int64_t k, std::int64_t n, int bits);
std::vector<std::uint8_t> unpack_qweight(std::span<const std::uint32_t> qweight, std::int64_t k, std::int64_t n,
                                         int bits);

// zeros: (G, N) row-major stored values. Returns qzeros (G, N * bits / 32) row-major.
std::vector<std::uint32_t> pack_qzeros(std::span<const std::uint8_t> zeros, std::int64_t groups, std::int64_t n,
                                       int bits);
std::vector<std::uint8_t> unpack_qzeros(std::span<const std::uint32_t> qzeros, std::int64_t groups, std::int64_t n,
                                        int bits);

// v1 stores zero - 1, v2 the zero itself (FORMATS.md 1.5). Converted field by field (unpack, +-1, repack), never
// by adding constants to whole words, which breaks the 3-bit straddling fields. v1 -> v2 refuses a stored value of
// 2^bits - 1 (a v1 writer's -1: a zero point of 0 that v1 cannot hold, whose word is corrupt) with a FormatError;
// v2 -> v1 refuses a zero of 0 with a ConfigError suggesting gptq_v2. `tensor` names the qzeros in errors.
std::vector<std::uint32_t> qzeros_v1_to_v2(std::span<const std::uint32_t> qzeros, std::int64_t groups,
                                           std::int64_t n, int bits, const std::string& tensor);
std::vector<std::uint32_t> qzeros_v2_to_v1(std::span<const std::uint32_t> qzeros, std::int64_t groups,
                                           std::int64_t n, int bits, const std::string& tensor);

}  // namespace qh::format
