#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "kernels/kernels.h"

namespace qh::kernels {

namespace {

__device__ float to_float(__half v) { return __half2float(v); }
__device__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ float to_float(float v) { return v; }
template <class T> __device__ T from_float(float v);
template <> __device__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ float from_float<float>(float v) { return v; }

// Field i of a bit stream of `bits`-bit values (the rule of impl/format/gptq_pack.h): bits [i*b, i*b + b).
template <class WordAt>
__device__ std::uint32_t field(WordAt word_at, std::int64_t i, int bits) {
  const std::int64_t bit = i * bits;
  const int shift = int(bit % 32);
  std::uint64_t v = word_at(bit / 32) >> shift;
  if (shift + bits > 32) v |= std::uint64_t(word_at(bit / 32 + 1)) << (32 - shift);
  return std::uint32_t(v) & ((1u << bits) - 1u);
}

template <class T>
__global__ void gptq_dequant_kernel(GptqDequantArgs a) {
  const std::int64_t n = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t chunk = blockIdx.y;  // 32 values of K = `bits` words of this column
  if (n >= a.n) return;
  // The last chunk may be short: K is a multiple of 32 / bits (bits 2, 4, 8) and its words end with it.
  const int count = int(a.k - chunk * 32 < 32 ? a.k - chunk * 32 : 32);
  const int needed = count * a.bits / 32;
  std::uint32_t words[8];
#pragma unroll
  for (int w = 0; w < 8; ++w) {  // constant indices keep the array in registers (ci/check_sass.py: no local memory)
    words[w] = w < needed ? a.qweight[(chunk * a.bits + w) * a.n + n] : 0u;
  }
  const auto* scales = static_cast<const T*>(a.scales);
  T* out = static_cast<T*>(a.out);
  const std::int64_t zero_words = a.n * a.bits / 32;
  for (int j = 0; j < count; ++j) {
    const std::int64_t k = chunk * 32 + j;
    const std::int32_t g = a.g_idx[k];
    float value = NAN;
    if (g >= 0 && g < a.groups) {
      const std::uint32_t* zrow = a.qzeros + g * zero_words;
      const float q = float(field([&](std::int64_t w) { return words[w]; }, j, a.bits));
      const float z = float(field([&](std::int64_t w) { return zrow[w]; }, n, a.bits) + a.zero_offset);
      value = to_float(scales[g * a.n + n]) * (q - z);
    }
    out[k * a.n + n] = from_float<T>(value);
  }
}

}  // namespace

cudaError_t launch_gptq_dequant(const GptqDequantArgs& a, cudaStream_t stream) {
  const bool bits_ok = a.bits == 2 || a.bits == 3 || a.bits == 4 || a.bits == 8;
  const std::int64_t chunks = (a.k + 31) / 32;
  if (!bits_ok || a.k * a.bits % 32 != 0 || (a.bits == 3 && a.k % 32 != 0) || a.n * a.bits % 32 != 0 || a.k < 1 ||
      a.n < 1 || chunks > 65535) {
    return cudaErrorInvalidValue;
  }
  constexpr int kThreads = 128;
  const dim3 grid(unsigned((a.n + kThreads - 1) / kThreads), unsigned(chunks));
  switch (a.dtype) {
    case DType::F16: gptq_dequant_kernel<__half><<<grid, kThreads, 0, stream>>>(a); break;
    case DType::BF16: gptq_dequant_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(a); break;
    case DType::F32: gptq_dequant_kernel<float><<<grid, kThreads, 0, stream>>>(a); break;
  }
  return cudaGetLastError();
}

}  // namespace qh::kernels
