#include "kernels/kernels.h"

namespace qh::kernels {

namespace {

constexpr int kThreads = 256;

__device__ std::uint64_t warp_sum(std::uint64_t v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Grid-stride over 16-byte chunks (the mapping and cudaMalloc give 256-byte aligned bases; `n` need not be a
// multiple of 16: the tail is read byte by byte), warp reduction, one atomic per warp. Unsigned wrap-around is the
// intended mod 2^64 arithmetic.
__global__ void byte_checksum_kernel(const std::uint8_t* __restrict__ data, std::uint64_t n,
                                     unsigned long long* __restrict__ result) {
  std::uint64_t sum = 0, weighted = 0;
  const std::uint64_t chunks = n / 16;
  const std::uint64_t stride = std::uint64_t(gridDim.x) * blockDim.x;
  const bool aligned = (reinterpret_cast<std::uintptr_t>(data) % 16) == 0;
  for (std::uint64_t c = std::uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks; c += stride) {
    std::uint8_t bytes[16];
    if (aligned) {
      *reinterpret_cast<uint4*>(bytes) = reinterpret_cast<const uint4*>(data)[c];
    } else {
      for (int j = 0; j < 16; ++j) bytes[j] = data[c * 16 + j];
    }
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      sum += bytes[j];
      weighted += (c * 16 + j + 1) * bytes[j];
    }
  }
  for (std::uint64_t i = chunks * 16 + blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    sum += data[i];
    weighted += (i + 1) * data[i];
  }
  sum = warp_sum(sum);
  weighted = warp_sum(weighted);
  if (threadIdx.x % 32 == 0) {
    atomicAdd(&result[0], static_cast<unsigned long long>(sum));
    atomicAdd(&result[1], static_cast<unsigned long long>(weighted));
  }
}

}  // namespace

ByteChecksum byte_checksum_host(const std::uint8_t* data, std::uint64_t n) {
  ByteChecksum out;
  for (std::uint64_t i = 0; i < n; ++i) {
    out.sum += data[i];
    out.weighted += (i + 1) * data[i];
  }
  return out;
}

cudaError_t launch_byte_checksum(const std::uint8_t* data, std::uint64_t n, std::uint64_t* result,
                                 cudaStream_t stream) {
  if (cudaError_t err = cudaMemsetAsync(result, 0, 2 * sizeof(std::uint64_t), stream); err != cudaSuccess) return err;
  if (n == 0) return cudaSuccess;
  int device = 0, sms = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return err;
  if (cudaError_t err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device); err != cudaSuccess)
    return err;
  const std::uint64_t work = (n + 15) / 16;
  const std::uint64_t blocks_needed = (work + kThreads - 1) / kThreads;
  const unsigned blocks = unsigned(blocks_needed < std::uint64_t(sms) * 8 ? blocks_needed : std::uint64_t(sms) * 8);
  byte_checksum_kernel<<<blocks, kThreads, 0, stream>>>(data, n, reinterpret_cast<unsigned long long*>(result));
  return cudaGetLastError();
}

}  // namespace qh::kernels
