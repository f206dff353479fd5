// Marlin-layout fp16/bf16 x int4 GEMM for sm_80+ (the contract is in kernels.h). Facts used from IST-DASLab Marlin
// and vLLM's gptq_marlin (FORMATS.md 3.1, 3.4), not their code: in each 16x64 piece of a B tile row, thread t of a
// warp owns 16 consecutive bytes, one int32 per 16x16 tile; that word holds the thread's mma.sync m16n8k16 B
// fragments of the tile's two 8-column halves (k rows 2(t%4), +1, +8, +9 at column t/4), nibbles ordered
// (half 0: k, k+8), (half 1: k, k+8), (half 0: k+1, k+9), (half 1: k+1, k+9) read from bit 0 up. Grouped scales
// are stored so that 16 bytes at 8 (t/4) give the thread the scales of its 8 columns of a 64-column chunk.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>

#include "kernels/kernels.h"

namespace qh::kernels {

namespace {

constexpr int kThreads = 256;  // 8 warps
constexpr int kWarps = kThreads / 32;

// Tuning knobs for perf/marlin_variants.sh; the defaults are what it measured best on an H100 (2026-11-23: 6 or 8
// stages for small m changed nothing; bk 128 instead of 64 for the 64 x 256 tile cut M = 64..256 times by 10-17 %).
#ifndef QH_SMALL_STAGES
#define QH_SMALL_STAGES 4
#endif
#ifndef QH_BIG_BK
#define QH_BIG_BK 128
#endif
#ifndef QH_BIG_STAGES
#define QH_BIG_STAGES 4
#endif

// Each row is one compiled kernel per dtype (launch_typed lists the indices).
constexpr MarlinGemmConfig kConfigs[] = {
    {1, 2, 128, QH_SMALL_STAGES},  // m <= 16: one m16 tile, 128 columns, 128 inputs per stage (4 warps split K)
    {2, 2, 128, QH_SMALL_STAGES},  // m <= 32
    {4, 4, QH_BIG_BK, QH_BIG_STAGES},  // larger m: 64 x 256 tiles, 2 warps split K per chunk
};
constexpr int kConfigCount = int(sizeof(kConfigs) / sizeof(kConfigs[0]));

template <typename To, typename From>
__device__ __forceinline__ To bits_as(const From& from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

// Per 16-bit type: the mma instruction, and the exponent trick that turns a 4-bit field into (q - 8) exactly: OR the
// nibble into the low mantissa bits of a power of two whose unit in the last place is 1 (fp16 1024 = 0x6400, bf16
// 128 = 0x4300), then subtract that power plus the zero point 8.
template <typename T>
struct Elem;

template <>
struct Elem<__half> {
  using Pair = __half2;
  static constexpr std::uint32_t kMagic = 0x64006400u;  // (1024, 1024)
  static constexpr std::uint32_t kBias = 0x64086408u;   // (1032, 1032)
  __device__ static void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ static __half from_float(float x) { return __float2half_rn(x); }
  __device__ static float to_float(__half x) { return __half2float(x); }
};

template <>
struct Elem<__nv_bfloat16> {
  using Pair = __nv_bfloat162;
  static constexpr std::uint32_t kMagic = 0x43004300u;  // (128, 128)
  static constexpr std::uint32_t kBias = 0x43084308u;   // (136, 136)
  __device__ static void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ static __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  __device__ static float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
};

// Fields p and p + 4 of `word` (bits 4p.. and 16 + 4p..) as the pair ((q - 8) s) rounded once to T.
template <typename T>
__device__ __forceinline__ std::uint32_t dequant_pair(std::uint32_t word, int p, typename Elem<T>::Pair scale) {
  using Pair = typename Elem<T>::Pair;
  const std::uint32_t biased = ((word >> (4 * p)) & 0x000f000fu) | Elem<T>::kMagic;
  const std::uint32_t bias = Elem<T>::kBias;  // a local: the constant itself has no device address
  const Pair centred = __hsub2(bits_as<Pair>(biased), bits_as<Pair>(bias));
  return bits_as<std::uint32_t>(__hmul2(centred, scale));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* global, bool valid) {
  // src-size 0 reads nothing and fills the 16 bytes with zeros (rows past m, inputs past k).
  const unsigned dst = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* smem) {
  const unsigned addr = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Position in the per-channel scale layout (FORMATS.md 3.1 _scale_perm_single: entry 8i + j of each 32 holds column
// 2i + {0,1,8,9,16,17,24,25}[j]) of column c of its 32-column block: the closed-form inverse.
__device__ __forceinline__ int single_scale_position(int c) { return 8 * ((c % 8) / 2) + 2 * (c / 8) + c % 2; }

struct Params {
  const uint4* a;
  const uint4* b;
  const uint4* s;
  const void* bias;
  void* c;
  float* workspace;
  int m, k, n, n_pad;
  int k_tiles;     // ceil(k / 16): 16-row tiles that hold inputs
  int groups;
  int group_size;  // > 0 with more than one group, else 0 (per-channel)
  int stages;      // pipeline stages over k
  int splits;
};

template <int MT, int NC, int BK, int STAGES>
struct Tile {
  static constexpr int kBm = 16 * MT, kBn = 64 * NC;
  static constexpr int kKt = BK / 16;            // 16-row tiles per stage
  static constexpr int kKg = kWarps / NC;        // warps sharing a 64-column chunk (they split the stage's tiles)
  static constexpr int kPerWarp = kKt / kKg;
  static_assert(kWarps % NC == 0 && kKt % kKg == 0, "warps must split a stage's tiles evenly");
  static constexpr int kA = kBm * BK / 8;        // 16-byte pieces per stage
  static constexpr int kB = kKt * NC * 32;
  static constexpr int kS = (BK / 32) * NC * 8;  // up to BK / 32 scale rows (group size 32)
  static constexpr int kStage = kA + kB + kS;
  static constexpr int kChannel = NC * 8;        // per-channel scales, loaded once
  static constexpr int kRow = kBn + 4;           // float row stride of the reduction buffer (spreads banks)
  static constexpr int kReduceBytes = kBm * kRow * 4;
  static constexpr int kPipelineBytes = (STAGES * kStage + kChannel) * 16;
  static constexpr int kSmemBytes = kPipelineBytes > kReduceBytes ? kPipelineBytes : kReduceBytes;
};

template <typename T, int MT, int NC, int BK, int STAGES>
__global__ void __launch_bounds__(kThreads) marlin_gemm_kernel(Params p) {
  using G = Tile<MT, NC, BK, STAGES>;
  constexpr int kStages = STAGES;
  using Pair = typename Elem<T>::Pair;
  extern __shared__ uint4 smem[];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int chunk = warp % NC, kg = warp / NC;
  const int n0 = blockIdx.x * G::kBn, m0 = blockIdx.y * G::kBm, split = blockIdx.z;
  const int first = int(std::int64_t(split) * p.stages / p.splits);
  const int last = int(std::int64_t(split + 1) * p.stages / p.splits);
  const int scale_row = p.n_pad / 8;  // 16-byte pieces per scale row (n_pad 16-bit values)
  const int b_row = p.n_pad / 2;      // 16-byte pieces per B row (2 n_pad int32)
  const int scale_rows = p.group_size > 0 ? (BK > p.group_size ? BK / p.group_size : 1) : 0;
  uint4* const channel = smem + kStages * G::kStage;

  auto load_stage = [&](int stage, int buf) {
    uint4* const sa = smem + buf * G::kStage;
    uint4* const sb = sa + G::kA;
    uint4* const ss = sb + G::kB;
    const int k0 = stage * BK;
    for (int i = tid; i < G::kA; i += kThreads) {
      const int r = i / (BK / 8), c = i % (BK / 8);
      const bool ok = m0 + r < p.m && k0 + 8 * c < p.k;
      const uint4* src = ok ? p.a + (std::int64_t(m0 + r) * p.k + k0 + 8 * c) / 8 : p.a;
      cp_async16(sa + r * (BK / 8) + (c ^ (r % 8)), src, ok);  // XOR swizzle: ldmatrix rows hit 8 different banks
    }
    for (int i = tid; i < G::kB; i += kThreads) {
      const int t = i / (NC * 32), c = (i / 32) % NC, piece = i % 32;
      const int row = stage * G::kKt + t;
      const bool ok = row < p.k_tiles && n0 + 64 * c < p.n_pad;
      const uint4* src = ok ? p.b + std::int64_t(row) * b_row + (n0 / 64 + c) * 32 + piece : p.b;
      cp_async16(sb + i, src, ok);
    }
    for (int i = tid; i < scale_rows * NC * 8; i += kThreads) {
      const int r = i / (NC * 8), c = (i / 8) % NC, piece = i % 8;
      const int g = k0 / p.group_size + r;
      const bool ok = g < p.groups && n0 + 64 * c < p.n_pad;
      const uint4* src = ok ? p.s + std::int64_t(g) * scale_row + (n0 / 64 + c) * 8 + piece : p.s;
      cp_async16(ss + i, src, ok);
    }
  };

  if (p.group_size == 0) {  // per-channel: one scale row, rearranged once into the grouped order the loop reads
    T* const dst = reinterpret_cast<T*>(channel);
    const T* const src = static_cast<const T*>(static_cast<const void*>(p.s));
    for (int i = tid; i < G::kBn; i += kThreads) {
      const int c = i / 64, q = i % 64;
      const int col = n0 + 64 * c + q / 8 + 8 * (q % 8);  // grouped order: entry 8i + j is column i + 8j
      dst[i] = col < p.n_pad ? src[col - col % 32 + single_scale_position(col % 32)] : Elem<T>::from_float(0.f);
    }
  }

  float acc[MT][8][4] = {};
  auto compute_stage = [&](int stage, int buf) {
    const uint4* const sa = smem + buf * G::kStage;
    const uint4* const sb = sa + G::kA;
    const uint4* const ss = sb + G::kB;
    if (n0 + 64 * chunk >= p.n_pad) return;
#pragma unroll
    for (int j = 0; j < G::kPerWarp; ++j) {
      const int t = kg + j * G::kKg;
      if (stage * G::kKt + t >= p.k_tiles) break;  // tiles are in increasing order; the rest are past k
      const uint4 words = sb[t * NC * 32 + chunk * 32 + lane];
      const int srow = p.group_size == 0 || BK <= p.group_size ? 0 : 16 * t / p.group_size;
      const uint4 scales = p.group_size == 0 ? channel[chunk * 8 + lane / 4] : ss[srow * NC * 8 + chunk * 8 + lane / 4];
      std::uint32_t frag_a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const int r = 16 * mt + lane % 16, c = 2 * t + lane / 16;
        ldmatrix_x4(frag_a[mt], sa + r * (BK / 8) + (c ^ (r % 8)));
      }
      const std::uint32_t word[4] = {words.x, words.y, words.z, words.w};
      const std::uint32_t scale_words[4] = {scales.x, scales.y, scales.z, scales.w};
#pragma unroll
      for (int tile = 0; tile < 4; ++tile) {  // 16x16 tile `tile` of the chunk: 8-column halves 2 tile, 2 tile + 1
        const Pair both = bits_as<Pair>(scale_words[tile]);
        const Pair s0 = Pair{both.x, both.x}, s1 = Pair{both.y, both.y};
        const std::uint32_t b00 = dequant_pair<T>(word[tile], 0, s0), b01 = dequant_pair<T>(word[tile], 1, s0);
        const std::uint32_t b10 = dequant_pair<T>(word[tile], 2, s1), b11 = dequant_pair<T>(word[tile], 3, s1);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Elem<T>::mma(acc[mt][2 * tile], frag_a[mt], b00, b01);
          Elem<T>::mma(acc[mt][2 * tile + 1], frag_a[mt], b10, b11);
        }
      }
    }
  };

  for (int i = 0; i < kStages - 1; ++i) {
    if (first + i < last) load_stage(first + i, i);
    cp_async_commit();
  }
  for (int stage = first; stage < last; ++stage) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage data visible to all; every warp is done with the buffer refilled next
    const int next = stage + kStages - 1;
    if (next < last) load_stage(next, (next - first) % kStages);
    cp_async_commit();
    compute_stage(stage, (stage - first) % kStages);
  }
  cp_async_wait<0>();
  __syncthreads();

  // The warps of a chunk hold partial sums over different tiles: add them in shared memory, in warp order.
  float* const red = reinterpret_cast<float*>(smem);
  for (int g = 0; g < G::kKg; ++g) {
    if (kg == g) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int h = 0; h < 8; ++h) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int row = 16 * mt + lane / 4 + (e >= 2 ? 8 : 0);
            const int col = 64 * chunk + 8 * h + 2 * (lane % 4) + e % 2;
            float& out = red[row * G::kRow + col];
            out = g == 0 ? acc[mt][h][e] : out + acc[mt][h][e];
          }
        }
      }
    }
    __syncthreads();
  }
  for (int i = tid; i < G::kBm * G::kBn; i += kThreads) {
    const int row = i / G::kBn, col = i % G::kBn;
    const int gm = m0 + row, gn = n0 + col;
    if (gm >= p.m || gn >= p.n) continue;
    float v = red[row * G::kRow + col];
    if (p.splits > 1) {
      p.workspace[(std::int64_t(split) * p.m + gm) * p.n + gn] = v;
    } else {
      if (p.bias != nullptr) v += Elem<T>::to_float(static_cast<const T*>(p.bias)[gn]);
      static_cast<T*>(p.c)[std::int64_t(gm) * p.n + gn] = Elem<T>::from_float(v);
    }
  }
}

// C = sum of the split-K partials in split order, plus bias, rounded once.
template <typename T>
__global__ void splitk_reduce_kernel(const float* __restrict__ workspace, int splits, std::int64_t m, std::int64_t n,
                                     const T* __restrict__ bias, T* __restrict__ c) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * n) return;
  float v = 0.f;
  for (int s = 0; s < splits; ++s) v += workspace[s * m * n + i];
  if (bias != nullptr) v += Elem<T>::to_float(bias[i % n]);
  c[i] = Elem<T>::from_float(v);
}

__global__ void permute_columns_kernel(const std::uint16_t* __restrict__ a, const std::int32_t* __restrict__ perm,
                                       std::int64_t m, std::int64_t k, std::uint16_t* __restrict__ out) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * k) return;
  const std::int64_t row = i / k;
  out[i] = a[row * k + perm[i % k]];
}

template <typename T, int Config>
cudaError_t launch_config(const Params& p, cudaStream_t stream) {
  constexpr MarlinGemmConfig c = kConfigs[Config];
  using G = Tile<c.m_tiles, c.n_chunks, c.bk, c.stages>;
  auto* kernel = marlin_gemm_kernel<T, c.m_tiles, c.n_chunks, c.bk, c.stages>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, G::kSmemBytes);
  if (e != cudaSuccess) return e;
  const dim3 grid(unsigned((p.n + G::kBn - 1) / G::kBn), unsigned((p.m + G::kBm - 1) / G::kBm), unsigned(p.splits));
  kernel<<<grid, kThreads, G::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_typed(const Params& p, int config, cudaStream_t stream) {
  switch (config) {
    case 0: return launch_config<T, 0>(p, stream);
    case 1: return launch_config<T, 1>(p, stream);
    case 2: return launch_config<T, 2>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <typename T>
cudaError_t launch_reduce(const MarlinGemmArgs& args, cudaStream_t stream) {
  constexpr int kReduceThreads = 256;
  const std::int64_t total = args.m * args.n;
  splitk_reduce_kernel<T><<<unsigned((total + kReduceThreads - 1) / kReduceThreads), kReduceThreads, 0, stream>>>(
      args.workspace, args.plan.splits, args.m, args.n, static_cast<const T*>(args.bias), static_cast<T*>(args.c));
  return cudaGetLastError();
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

}  // namespace

int marlin_gemm_config_count() { return kConfigCount; }

MarlinGemmConfig marlin_gemm_config(int index) {
  return index >= 0 && index < kConfigCount ? kConfigs[index] : MarlinGemmConfig{};
}

std::int64_t marlin_gemm_stages(int config, std::int64_t k) {
  const int bk = marlin_gemm_config(config).bk;
  return (k + bk - 1) / bk;
}

MarlinGemmPlan marlin_gemm_plan(std::int64_t m, std::int64_t n, std::int64_t k, int sm_count) {
  MarlinGemmPlan plan;
  plan.config = m <= 16 ? 0 : m <= 32 ? 1 : 2;
  const MarlinGemmConfig c = kConfigs[plan.config];
  const std::int64_t tiles = ((n + 64 * c.n_chunks - 1) / (64 * c.n_chunks)) * ((m + 16 * c.m_tiles - 1) / (16 * c.m_tiles));
  const std::int64_t stages = marlin_gemm_stages(plan.config, k);
  while (tiles * plan.splits < sm_count && plan.splits * 2 <= stages) plan.splits *= 2;
  return plan;
}

cudaError_t launch_marlin_gemm(const MarlinGemmArgs& args, cudaStream_t stream) {
  const MarlinGemmPlan& plan = args.plan;
  const bool group_ok = args.group_size == -1 || args.group_size == 32 || args.group_size == 64 ||
                        args.group_size == 128;
  if (args.m <= 0 || args.k <= 0 || args.n <= 0 || args.k % 8 != 0 || args.n_pad % 64 != 0 || args.n > args.n_pad ||
      args.k_pad % 16 != 0 || args.k > args.k_pad || !group_ok || plan.config < 0 || plan.config >= kConfigCount ||
      plan.splits < 1 || plan.splits > marlin_gemm_stages(plan.config, args.k) || (plan.splits > 1 && !args.workspace) ||
      args.m > 65535LL * 16 || args.k_pad > (1LL << 30) || args.n_pad > (1LL << 30) ||
      !aligned16(args.a) || !aligned16(args.b) || !aligned16(args.s) || args.dtype == DType::F32) {
    return cudaErrorInvalidValue;
  }
  const std::int64_t groups = args.group_size == -1 ? 1 : (args.k + args.group_size - 1) / args.group_size;
  Params p{};
  p.a = static_cast<const uint4*>(args.a);
  p.b = reinterpret_cast<const uint4*>(args.b);
  p.s = static_cast<const uint4*>(args.s);
  p.bias = args.bias;
  p.c = args.c;
  p.workspace = args.workspace;
  p.m = int(args.m), p.k = int(args.k), p.n = int(args.n), p.n_pad = int(args.n_pad);
  p.k_tiles = int((args.k + 15) / 16);
  p.groups = int(groups);
  p.group_size = groups > 1 ? args.group_size : 0;
  p.stages = int(marlin_gemm_stages(plan.config, args.k));
  p.splits = plan.splits;
  const bool half = args.dtype == DType::F16;
  cudaError_t e = half ? launch_typed<__half>(p, plan.config, stream) : launch_typed<__nv_bfloat16>(p, plan.config, stream);
  if (e != cudaSuccess || plan.splits == 1) return e;
  return half ? launch_reduce<__half>(args, stream) : launch_reduce<__nv_bfloat16>(args, stream);
}

cudaError_t launch_permute_columns(const void* a, const std::int32_t* perm, std::int64_t m, std::int64_t k, void* out,
                                   cudaStream_t stream) {
  if (m <= 0 || k <= 0) return cudaErrorInvalidValue;
  constexpr int kPermThreads = 256;
  const std::int64_t total = m * k;
  permute_columns_kernel<<<unsigned((total + kPermThreads - 1) / kPermThreads), kPermThreads, 0, stream>>>(
      static_cast<const std::uint16_t*>(a), perm, m, k, static_cast<std::uint16_t*>(out));
  return cudaGetLastError();
}

}  // namespace qh::kernels
