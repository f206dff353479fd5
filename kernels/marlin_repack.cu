#include "kernels/kernels.h"

namespace qh::kernels {

namespace {

// Warps (pieces) per block; a tuning knob (perf/build_variant.sh -DQH_REPACK_WARPS=N).
#ifndef QH_REPACK_WARPS
#define QH_REPACK_WARPS 8
#endif
constexpr int kWarpsPerBlock = QH_REPACK_WARPS;
constexpr int kPieceWords = 128;  // one 16 x 64 piece of a tile row: 1024 codes, 128 output words

// The 4 bit codes of rows lo and hi as one byte (lo in the low nibble).
__device__ __forceinline__ std::uint32_t nibble_pair(std::uint32_t lo, std::uint32_t hi) { return lo | (hi << 4); }

// The low nibbles of the 4 bytes of y, in byte order, as 16 bits.
__device__ __forceinline__ std::uint32_t low_nibbles(std::uint32_t y) {
  y &= 0x0f0f0f0fu;
  y = (y | (y >> 4)) & 0x00ff00ffu;
  return (y | (y >> 8)) & 0xffffu;
}

// One warp per 16 x 64 piece, lane l making output words 4l .. 4l + 3 (FORMATS.md 3.1, the 1024-entry permutation
// solved for its source): word j of lane l holds k rows r0, r0 + 1, r0 + 8, r0 + 9 (r0 = 2 (l % 4)) of columns
// c = 16 j + l / 4 and c + 8, the nibbles from bit 0 up being (r0, c), (r0 + 8, c), (r0, c + 8), (r0 + 8, c + 8),
// then the same for r0 + 1 and r0 + 9. The lane reads its codes straight from qweight: without perm rows r0 and r0 + 1
// are byte l % 4 of the words of qweight row 2 kt (rows r0 + 8, r0 + 9: row 2 kt + 1), 16 words per lane whose
// 32-byte sectors the warp's loads cover exactly once; with perm each of the 4 rows is a nibble of its own qweight
// row. The lane stores its 4 words as 16 bytes (512 bytes per warp, coalesced). No shared memory and no
// permutation table: the earlier one-thread-per-word and shared-memory versions were bound by byte-wise shared
// accesses (ncu: L1 99 % busy at 0.36 of the copy bandwidth).
__global__ void __launch_bounds__(32 * kWarpsPerBlock) marlin_repack_kernel(const std::uint32_t* __restrict__ qweight,
                                                                           const std::int32_t* __restrict__ perm,
                                                                           std::int64_t k, std::int64_t n,
                                                                           std::uint32_t* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const std::int64_t piece = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32, kt = blockIdx.y;
  if (piece * 64 >= n) return;
  const std::int64_t col0 = piece * 64 + lane / 4;
  const int r0 = 2 * (lane % 4);
  // bytes[r][j][h]: rows r0 + 8 r (low nibble) and r0 + 8 r + 1 (high) of column 16 j + 8 h + col0.
  std::uint32_t bytes[2][4][2];
  if (perm == nullptr) {
    std::uint32_t words[2][4][2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) words[r][j][h] = __ldg(qweight + (2 * kt + r) * n + col0 + 16 * j + 8 * h);
      }
    }
    const int shift = 8 * (lane % 4);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) bytes[r][j][h] = (words[r][j][h] >> shift) & 0xffu;
      }
    }
  } else {
    std::int64_t source[2][2];  // [r][e]: the qweight code row of k row r0 + 8 r + e
#pragma unroll
    for (int r = 0; r < 2; ++r) {
#pragma unroll
      for (int e = 0; e < 2; ++e) source[r][e] = perm[16 * kt + r0 + 8 * r + e];
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const std::uint32_t* lo_row = qweight + (source[r][0] / 8) * n + col0;
      const std::uint32_t* hi_row = qweight + (source[r][1] / 8) * n + col0;
      const int lo_shift = int(4 * (source[r][0] % 8)), hi_shift = int(4 * (source[r][1] % 8));
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          bytes[r][j][h] = nibble_pair((__ldg(lo_row + 16 * j + 8 * h) >> lo_shift) & 15u,
                                       (__ldg(hi_row + 16 * j + 8 * h) >> hi_shift) & 15u);
        }
      }
    }
  }
  std::uint32_t words[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    // Bytes in nibble order: (r0, c), (r0 + 8, c), (r0, c + 8), (r0 + 8, c + 8); low nibbles make bits 0-15.
    const std::uint32_t y = bytes[0][j][0] | (bytes[1][j][0] << 8) | (bytes[0][j][1] << 16) | (bytes[1][j][1] << 24);
    words[j] = low_nibbles(y) | (low_nibbles(y >> 4) << 16);
  }
  reinterpret_cast<uint4*>(out + kt * 2 * n + piece * kPieceWords)[lane] = make_uint4(words[0], words[1], words[2], words[3]);
}

}  // namespace

cudaError_t launch_marlin_repack(const std::uint32_t* qweight, const std::int32_t* perm, std::int64_t k, std::int64_t n,
                                 std::uint32_t* out, cudaStream_t stream) {
  if (k <= 0 || k % 16 != 0 || n <= 0 || n % 64 != 0 || k / 16 > 65535 || qweight == nullptr || out == nullptr ||
      reinterpret_cast<std::uintptr_t>(out) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(unsigned((n / 64 + kWarpsPerBlock - 1) / kWarpsPerBlock), unsigned(k / 16));
  marlin_repack_kernel<<<grid, 32 * kWarpsPerBlock, 0, stream>>>(qweight, perm, k, n, out);
  return cudaGetLastError();
}

}  // namespace qh::kernels
