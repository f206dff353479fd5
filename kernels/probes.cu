// Kernels that probe the GPU's limits for the perf harness (perf/probes.h): DRAM copy, L2 read, the integer work
// of dequantization, an empty launch, and an SM clock reading. Each does a known amount of work so that the
// harness can turn a time into a rate; none has a use outside measurement.
#include "kernels/kernels.h"

namespace qh::kernels {

namespace {

constexpr int kThreads = 256;

// Grid-stride 16-byte copy; bases from cudaMalloc are 256-byte aligned and `words` counts 16-byte words.
__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, std::uint64_t words) {
  const std::uint64_t stride = std::uint64_t(gridDim.x) * blockDim.x;
  for (std::uint64_t i = std::uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < words; i += stride) dst[i] = src[i];
}

// Reads `words` 16-byte words `passes` times through L2 only (ld.global.cg: each SM re-reads the same slice every
// pass, which L1 would otherwise serve); the XOR of what was read goes to sink[thread] only when it equals a value
// the data never produces in practice, so the loads cannot be dropped and almost nothing is written.
__global__ void read_kernel(const uint4* __restrict__ buf, std::uint64_t words, int passes,
                            unsigned* __restrict__ sink) {
  const std::uint64_t tid = std::uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::uint64_t stride = std::uint64_t(gridDim.x) * blockDim.x;
  unsigned acc = 0;
  for (int p = 0; p < passes; ++p) {
    for (std::uint64_t i = tid; i < words; i += stride) {
      const uint4 v = __ldcg(buf + i);
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
  }
  if (acc == 0x9e3779b9u) sink[tid] = acc;
}

__device__ __forceinline__ unsigned lop3_xor(unsigned a, unsigned b, unsigned c) {
  unsigned d;
  asm volatile("lop3.b32 %0, %1, %2, %3, 0x96;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// The integer instruction mix of 4-bit dequantization (LOP3 masks, funnel shifts, byte permutes), as 8 independent
// chains of 3 dependent instructions per step so the issue rate, not latency, is the limit. Every step reads all
// three chains' values, so the compiler can neither fold the LOP3s nor drop the loop. kAluOpsPerStep counts them.
constexpr int kChains = 8;
__global__ void int_alu_kernel(int steps, unsigned* __restrict__ sink) {
  unsigned a[kChains], b[kChains], c[kChains];
#pragma unroll
  for (int j = 0; j < kChains; ++j) {
    a[j] = threadIdx.x * 0x9e3779b9u + j;
    b[j] = blockIdx.x ^ (j * 0x85ebca6bu);
    c[j] = a[j] + b[j];
  }
  for (int s = 0; s < steps; ++s) {
#pragma unroll
    for (int j = 0; j < kChains; ++j) {
      a[j] = lop3_xor(a[j], b[j], c[j]);
      b[j] = __funnelshift_r(b[j], a[j], 5);
      c[j] = __byte_perm(c[j], b[j], 0x5410);
    }
  }
  unsigned acc = 0;
#pragma unroll
  for (int j = 0; j < kChains; ++j) acc ^= a[j] ^ b[j] ^ c[j];
  if (acc == 0x9e3779b9u) sink[std::uint64_t(blockIdx.x) * blockDim.x + threadIdx.x] = acc;
}

__global__ void empty_kernel() {}

// One thread: the SM's clock64 cycles over at least `window_ns` of the global timer, on one SM (clock64 is per SM).
__global__ void sm_clock_kernel(std::uint64_t window_ns, unsigned long long* __restrict__ out) {
  unsigned long long t0, t1;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  const long long c0 = clock64();
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
  } while (t1 - t0 < window_ns);
  const long long c1 = clock64();
  out[0] = static_cast<unsigned long long>(c1 - c0);
  out[1] = t1 - t0;
}

int grid_for(std::uint64_t items, int sm_count) {
  const std::uint64_t blocks = (items + kThreads - 1) / kThreads;
  const std::uint64_t cap = std::uint64_t(sm_count > 0 ? sm_count : 1) * 8;  // enough resident warps to saturate
  return int(blocks < cap ? (blocks > 0 ? blocks : 1) : cap);
}

}  // namespace

cudaError_t launch_probe_copy(const void* src, void* dst, std::uint64_t bytes, int sm_count, cudaStream_t stream) {
  if (bytes % 16 != 0) return cudaErrorInvalidValue;
  const std::uint64_t words = bytes / 16;
  copy_kernel<<<grid_for(words, sm_count), kThreads, 0, stream>>>(static_cast<const uint4*>(src),
                                                                   static_cast<uint4*>(dst), words);
  return cudaGetLastError();
}

std::size_t probe_read_sink_count(int sm_count) { return std::size_t(sm_count > 0 ? sm_count : 1) * 8 * kThreads; }

cudaError_t launch_probe_read(const void* buf, std::uint64_t bytes, int passes, unsigned* sink, int sm_count,
                              cudaStream_t stream) {
  if (bytes % 16 != 0 || passes < 1) return cudaErrorInvalidValue;
  const std::uint64_t words = bytes / 16;
  read_kernel<<<grid_for(words, sm_count), kThreads, 0, stream>>>(static_cast<const uint4*>(buf), words, passes, sink);
  return cudaGetLastError();
}

std::uint64_t probe_int_alu_ops(int blocks, int steps) {
  return std::uint64_t(blocks) * kThreads * std::uint64_t(steps) * kChains * 3;
}

int probe_int_alu_threads() { return kThreads; }

cudaError_t launch_probe_int_alu(int blocks, int steps, unsigned* sink, cudaStream_t stream) {
  if (blocks < 1 || steps < 1) return cudaErrorInvalidValue;
  int_alu_kernel<<<blocks, kThreads, 0, stream>>>(steps, sink);
  return cudaGetLastError();
}

cudaError_t launch_probe_empty(cudaStream_t stream) {
  empty_kernel<<<1, 1, 0, stream>>>();
  return cudaGetLastError();
}

cudaError_t launch_probe_sm_clock(std::uint64_t window_ns, unsigned long long* out, cudaStream_t stream) {
  sm_clock_kernel<<<1, 1, 0, stream>>>(window_ns, out);
  return cudaGetLastError();
}

}  // namespace qh::kernels
