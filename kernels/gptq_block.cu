#include "kernels/kernels.h"

namespace qh::kernels {

namespace {

constexpr int kWarps = 8;                       // rows per thread block
constexpr int kPerLane = kGptqMaxBlock / 32;    // block columns held in registers by each lane

__global__ void __launch_bounds__(kWarps * 32) gptq_block_kernel(GptqBlockArgs a) {
  extern __shared__ float hinv[];  // count x count, row-major
  const int count = a.count;
  for (int idx = threadIdx.x; idx < count * count; idx += blockDim.x) {
    const int i = idx / count, j = idx % count;
    hinv[idx] = a.hinv[(a.col0 + i) * a.ldh + a.col0 + j];
  }
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= a.rows) return;  // whole warps leave together, after the only barrier

  // Lane l holds block columns l*kPerLane .. l*kPerLane + kPerLane - 1.
  float x[kPerLane];
  const float* w_row = a.w + row * a.ld + a.col0;
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int j = lane * kPerLane + c;
    x[c] = j < count ? w_row[j] : 0.f;
  }
  const float* scale_row = a.scales + row * a.table;
  const float* zero_row = a.zeros + row * a.table;
  const std::int64_t out = row * a.ld + a.col0;
  for (int i = 0; i < count; ++i) {
    float mine = 0.f;
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) mine = (i % kPerLane == c) ? x[c] : mine;  // constant indices only
    const float w = __shfl_sync(0xffffffffu, mine, i / kPerLane);
    const int t = a.col_table[i];
    const float s = scale_row[t], z = zero_row[t];
    const float code = fminf(fmaxf(rintf(w / s) + z, 0.f), float(a.maxq));
    const float qv = s * (code - z);
    const float d = hinv[i * count + i];
    const float e = (w - qv) / d;
    if (lane == 0) {
      a.q[out + i] = qv;
      a.codes[out + i] = std::int32_t(code);
      a.losses[out + i] = 0.5 * double(e) * double(e);  // (w - q)^2 / d^2 / 2
      a.err[row * count + i] = e;
    }
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) {
      const int j = lane * kPerLane + c;
      if (j > i && j < count) x[c] -= e * hinv[i * count + j];
    }
  }
}

}  // namespace

cudaError_t launch_gptq_block(const GptqBlockArgs& args, cudaStream_t stream) {
  if (args.count < 1 || args.count > kGptqMaxBlock || args.rows < 1) return cudaErrorInvalidValue;
  const std::size_t smem = std::size_t(args.count) * std::size_t(args.count) * sizeof(float);
  static const cudaError_t attr = cudaFuncSetAttribute(gptq_block_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                       int(kGptqMaxBlock * kGptqMaxBlock * sizeof(float)));
  if (attr != cudaSuccess) return attr;
  const unsigned blocks = unsigned((args.rows + kWarps - 1) / kWarps);
  gptq_block_kernel<<<blocks, kWarps * 32, smem, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace qh::kernels
