#include "kernels/kernels.h"

namespace qh::kernels {

namespace {

// Entry p of the 1024-entry Marlin weight permutation (FORMATS.md 3.1), in closed form: position p of a chunk takes
// entry interleave[p % 8] of 8-tuple p / 8 of the list _get_perms builds before interleaving, whose entry q is
// 16*row + col + 8*block + 256*j for q = 32 i + 8 j + 4 block + r (loops i, then j, block, r), col = i / 4 and
// row = {2(i%4), 2(i%4)+1, 2(i%4+4), 2(i%4+4)+1}[r]. The CPU reference builds the same table by its loops.
__device__ int marlin_weight_perm(int p) {
  constexpr int interleave[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  const int q = (p & ~7) + interleave[p & 7];
  const int i = q / 32, j = (q % 32) / 8, block = (q % 8) / 4, r = q % 4;
  const int base = 2 * (i % 4) + (r >= 2 ? 8 : 0);
  const int row = base + (r & 1);
  return 16 * row + i / 4 + 8 * block + 256 * j;
}

__global__ void marlin_repack_kernel(const std::uint32_t* __restrict__ qweight, const std::int32_t* __restrict__ perm,
                                     std::int64_t k, std::int64_t n, std::uint32_t* __restrict__ out) {
  const std::int64_t words = 2 * n;
  const std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t kt = blockIdx.y;
  if (c >= words) return;
  const std::int64_t chunk = c / 128;  // 1024 nibbles = 128 words per chunk
  std::uint32_t word = 0;
  for (int i = 0; i < 8; ++i) {
    const int src = marlin_weight_perm(int(c % 128) * 8 + i);  // position inside the chunk before permuting
    const std::int64_t g = chunk * 1024 + src;                 // position in the tile row: 16x16 tiles along N
    const std::int64_t row = kt * 16 + (g % 256) / 16, col = (g / 256) * 16 + g % 16;
    const std::int64_t source = perm != nullptr ? perm[row] : row;
    const std::uint32_t code = (qweight[(source / 8) * n + col] >> (4 * (source % 8))) & 15u;
    word |= code << (4 * i);
  }
  out[kt * words + c] = word;
}

}  // namespace

cudaError_t launch_marlin_repack(const std::uint32_t* qweight, const std::int32_t* perm, std::int64_t k, std::int64_t n,
                                 std::uint32_t* out, cudaStream_t stream) {
  if (k <= 0 || k % 16 != 0 || n <= 0 || n % 64 != 0 || k / 16 > 65535) return cudaErrorInvalidValue;
  constexpr int kThreads = 128;
  const dim3 grid(unsigned((2 * n + kThreads - 1) / kThreads), unsigned(k / 16));
  marlin_repack_kernel<<<grid, kThreads, 0, stream>>>(qweight, perm, k, n, out);
  return cudaGetLastError();
}

}  // namespace qh::kernels
