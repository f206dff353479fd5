// Marlin-layout fp16/bf16 x int4 GEMM for sm_80+ (the contract is in kernels.h). Facts used from IST-DASLab Marlin
// and vLLM's gptq_marlin (FORMATS.md 3.1, 3.4), not their code: in each 16x64 piece of a B tile row, thread t of a
// warp owns 16 consecutive bytes, one int32 per 16x16 tile; that word holds the thread's mma.sync m16n8k16 B
// fragments of the tile's two 8-column halves (k rows 2(t%4), +1, +8, +9 at column t/4), nibbles ordered
// (half 0: k, k+8), (half 1: k, k+8), (half 0: k+1, k+9), (half 1: k+1, k+9) read from bit 0 up. Grouped scales
// are stored so that 16 bytes at 8 (t/4) give the thread the scales of its 8 columns of a 64-column chunk.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <type_traits>

#include "kernels/kernels.h"

namespace qh::kernels {

namespace {

constexpr int kThreads = 256;  // 8 warps
constexpr int kWarps = kThreads / 32;

// Tuning knobs (perf/build_variant.sh -DQH_NAME=VALUE, timed by perf/run_variants.sh); the defaults are what it
// measured best. H100, 2026-11-23: 6 or 8 stages for small m changed nothing; bk 128 instead of 64 for the 64 x 256
// tile cut M = 64..256 times by 10-17 %. H200, 2026-12-01 (stream-K, perf/marlin_notes.md): for m <= 32, 256 inputs
// per stage with 3 stages beat 128 with 4 or 6 (M = 1 on 8192 x 28672: 72 us against 79), and 256 columns
// (QH_SMALL_NC 4) was slower on every shape.
#ifndef QH_SMALL_STAGES
#define QH_SMALL_STAGES 3
#endif
#ifndef QH_SMALL_NC
#define QH_SMALL_NC 2
#endif
#ifndef QH_SMALL_BK
#define QH_SMALL_BK 256
#endif
#ifndef QH_BIG_BK
#define QH_BIG_BK 128
#endif
#ifndef QH_BIG_STAGES
#define QH_BIG_STAGES 4
#endif
// Units (stages of a tile) a block gets at least: on small shapes fewer blocks with more units each, so fewer parts per
// tile go through the workspace and the last block of a tile sums fewer of them. H200: 4 took M = 16 on 4096 x 4096
// from 20.2 to 16.7 us and changed no large shape, 8 was slower on 11008 x 4096; for the 64 x 256 tile 4 beat 16 and
// 32 (M = 64 on 4096 x 4096: 45, 75, 80 us).
#ifndef QH_SMALL_MIN_UNITS
#define QH_SMALL_MIN_UNITS 4
#endif
#ifndef QH_BIG_MIN_UNITS
#define QH_BIG_MIN_UNITS 4
#endif

// The wgmma configurations (sm_90a): pipeline depth, minimum units per block, and the smallest m that the plan
// gives them on a CC 9.0 GPU (m > 32 always leaves the small-m kernels; a large value keeps every m on mma.sync).
// H200, 2026-12-02: 4, 5 and 6 stages within 1 % of each other at M = 64..1024.
#ifndef QH_WGMMA_STAGES
#define QH_WGMMA_STAGES 5
#endif
#ifndef QH_WGMMA_MIN_UNITS
#define QH_WGMMA_MIN_UNITS 4
#endif
#ifndef QH_WGMMA_MIN_M
#define QH_WGMMA_MIN_M 33
#endif

// Each row is one compiled kernel per dtype (launch_typed lists the indices).
constexpr MarlinGemmConfig kConfigs[] = {
    {1, QH_SMALL_NC, QH_SMALL_BK, QH_SMALL_STAGES, QH_SMALL_MIN_UNITS},  // m <= 16: 16 x 128, 256 inputs per stage
    {2, QH_SMALL_NC, QH_SMALL_BK, QH_SMALL_STAGES, QH_SMALL_MIN_UNITS},  // m <= 32
    {4, 4, QH_BIG_BK, QH_BIG_STAGES, QH_BIG_MIN_UNITS},  // larger m: 64 x 256 tiles, 2 warps split K per chunk
    {4, 4, 64, QH_WGMMA_STAGES, QH_WGMMA_MIN_UNITS, 90},  // m <= 64 on CC 9.0: the same tiles on wgmma
    {8, 4, 64, QH_WGMMA_STAGES, QH_WGMMA_MIN_UNITS, 90},  // larger m on CC 9.0: 128 x 256 tiles on wgmma
};
constexpr int kConfigCount = int(sizeof(kConfigs) / sizeof(kConfigs[0]));

// Blocks per SM of the persistent grid (at most; fewer when registers or shared memory say so); a tuning knob.
#ifndef QH_BLOCKS_PER_SM
#define QH_BLOCKS_PER_SM 2
#endif
constexpr int kBlocksPerSm = QH_BLOCKS_PER_SM;
// At most 31 blocks share a tile, so a tile is cut into at most 63 parts (each block's range is at least
// floor(S / 31) >= S / 62 units of the tile's S when S >= 31, and a part is at least one unit): the tests' error
// bound counts 64 partial sums per output.
constexpr std::int64_t kMaxBlocksPerTile = 31;

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

// (word & Mask) | Magic in one LOP3 (0xea: a & b | c); written as (a & b) | c nvcc emits two, since a SASS LOP3 takes
// one immediate and both constants are immediates (IST-DASLab Marlin's lop3, a fact used here).
template <std::uint32_t Mask, std::uint32_t Magic>
__device__ __forceinline__ std::uint32_t mask_or(std::uint32_t word) {
  std::uint32_t out;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(out) : "r"(word), "n"(Mask), "n"(Magic));
  return out;
}

// Fields p and p + 4 of `word` (bits 4p.. and 16 + 4p..) as the pair ((q - 8) s) rounded once to T.
template <typename T>
__device__ __forceinline__ std::uint32_t dequant_pair(std::uint32_t word, int p, typename Elem<T>::Pair scale) {
  using Pair = typename Elem<T>::Pair;
  const std::uint32_t biased = mask_or<0x000f000fu, Elem<T>::kMagic>(word >> (4 * p));
  const std::uint32_t bias = Elem<T>::kBias;  // a local: the constant itself has no device address
  const Pair centred = __hsub2(bits_as<Pair>(biased), bits_as<Pair>(bias));
  return bits_as<std::uint32_t>(__hmul2(centred, scale));
}

// The four pairs of one word, ((q - 8) s) rounded once: pair p holds fields p and p + 4; pairs 0, 1 take scale s0,
// pairs 2, 3 scale s1. fp16 masks two fields at once without shifting the upper one down: 1024 + 16 q is exact, and
// one fma, (1024 + 16 q) / 16 - 72, gives q - 8 exactly (the dequantization trick of IST-DASLab Marlin, a fact used
// here). bf16 has 7 mantissa bits, too few to hold 16 q, so it shifts each field down.
template <typename T>
__device__ __forceinline__ void dequant_word(std::uint32_t word, typename Elem<T>::Pair s0, typename Elem<T>::Pair s1,
                                             std::uint32_t (&b)[4]) {
  if constexpr (std::is_same_v<T, __half>) {
    const std::uint32_t bias = Elem<T>::kBias, sixteenth = 0x2c002c00u, minus72 = 0xd480d480u;  // 1032, 1/16, -72
    const std::uint32_t high = word >> 8;
    constexpr std::uint32_t kLow = 0x000f000fu, kHigh = 0x00f000f0u, kMagic = Elem<T>::kMagic;
    const __half2 q0 = __hsub2(bits_as<__half2>(mask_or<kLow, kMagic>(word)), bits_as<__half2>(bias));
    const __half2 q1 = __hfma2(bits_as<__half2>(mask_or<kHigh, kMagic>(word)), bits_as<__half2>(sixteenth),
                               bits_as<__half2>(minus72));
    const __half2 q2 = __hsub2(bits_as<__half2>(mask_or<kLow, kMagic>(high)), bits_as<__half2>(bias));
    const __half2 q3 = __hfma2(bits_as<__half2>(mask_or<kHigh, kMagic>(high)), bits_as<__half2>(sixteenth),
                               bits_as<__half2>(minus72));
    b[0] = bits_as<std::uint32_t>(__hmul2(q0, s0));
    b[1] = bits_as<std::uint32_t>(__hmul2(q1, s0));
    b[2] = bits_as<std::uint32_t>(__hmul2(q2, s1));
    b[3] = bits_as<std::uint32_t>(__hmul2(q3, s1));
  } else {
    b[0] = dequant_pair<T>(word, 0, s0);
    b[1] = dequant_pair<T>(word, 1, s0);
    b[2] = dequant_pair<T>(word, 2, s1);
    b[3] = dequant_pair<T>(word, 3, s1);
  }
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

// Hopper (sm_90a) warpgroup MMA, used by the m > 32 configurations on CC 9.0 (PTX ISA, "Asynchronous Warpgroup Level
// Matrix Multiply-Accumulate"; facts used: the instruction forms, the shared-memory matrix descriptor's bit fields and
// the 128-byte swizzle). Compiled for sm_90a only; other targets get a trap (the host never launches it there).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define QH_WGMMA 1
#else
#define QH_WGMMA 0
#endif

// Descriptor of a K-major operand tile in shared memory with the 128-byte swizzle: rows of 64 16-bit inputs (128 B),
// 16-byte piece c of row r stored at piece c ^ (r % 8) (the layout the A copy writes), 8-row atoms of 1024 B that
// start 1024-byte aligned. Bits 0-13: start address / 16; 16-29: leading offset / 16 (unused with a swizzle, 1);
// 32-45: stride between 8-row atoms / 16 (1024 B); 62-63: layout 1 = 128-byte swizzle. A 16-input step along k
// moves the start by 32 bytes: the hardware applies the swizzle to the full address.
__device__ __forceinline__ std::uint64_t kmajor_sw128_desc(const void* smem) {
  const std::uint64_t addr = unsigned(__cvta_generic_to_shared(smem));
  return ((addr & 0x3ffffu) >> 4) | (std::uint64_t(1) << 16) | (std::uint64_t(1024 >> 4) << 32) |
         (std::uint64_t(1) << 62);
}

__device__ __forceinline__ void wgmma_fence() {
#if QH_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if QH_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if QH_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Generic-proxy writes to shared memory (cp.async) made visible to the async proxy that wgmma reads through.
__device__ __forceinline__ void fence_proxy_async() {
#if QH_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// d (64 x N, float32) += a (64 x 16, registers: warp w of the warpgroup holds rows 16 w .. 16 w + 15 in the mma.sync
// m16n8k16 A layout) x b (16 x N, K-major in shared memory through `desc`). d[r] of a thread (lane l) is row
// 16 w + l / 4 + 8 ((r / 2) % 2), column 2 (l % 4) + r % 2 + 8 (r / 4). accumulate == 0: d = a x b (d's old
// contents unread: no instruction has to zero the accumulators, so none writes them but the wgmma).
#define QH_WGMMA_M64N64K16(TYPE) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " " \
      "{%0, %1, %2, %3, %4, %5, %6, %7, " \
      "%8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, " \
      "%24, %25, %26, %27, %28, %29, %30, %31}, " \
      "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n" \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate))
#define QH_WGMMA_M64N128K16(TYPE) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " " \
      "{%0, %1, %2, %3, %4, %5, %6, %7, " \
      "%8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, " \
      "%24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, " \
      "%40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, " \
      "%56, %57, %58, %59, %60, %61, %62, %63}, " \
      "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n" \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate))

template <typename T, int N>
__device__ __forceinline__ void wgmma_m64k16(float (&d)[N / 2], const std::uint32_t (&a)[4], std::uint64_t desc,
                                             int accumulate) {
  static_assert(N == 64 || N == 128, "the two widths the wgmma tiles use");
#if QH_WGMMA
  constexpr bool kHalf = std::is_same_v<T, __half>;
  if constexpr (N == 64 && kHalf) {
    QH_WGMMA_M64N64K16("f16");
  } else if constexpr (N == 64) {
    QH_WGMMA_M64N64K16("bf16");
  } else if constexpr (kHalf) {
    QH_WGMMA_M64N128K16("f16");
  } else {
    QH_WGMMA_M64N128K16("bf16");
  }
#else
  __trap();
#endif
}
#undef QH_WGMMA_M64N64K16
#undef QH_WGMMA_M64N128K16

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
  int group_size;   // > 0 with more than one group, else 0 (per-channel)
  int group_shift;  // log2(group_size): 32, 64 or 128 (a shift instead of a division in the loop)
  int stages;      // pipeline stages over k (S): a tile's units
  int n_tiles;     // column tiles; tile t covers rows (t / n_tiles) and columns (t % n_tiles)
  std::int64_t units;  // tiles x stages (U)
  unsigned* counters;  // one per tile, zero between launches (the last block of a tile resets its own)
};

// Stream-K (Osama et al., "Stream-K: Work-centric Parallel Decomposition for Dense Matrix Multiplication", 2023):
// the U = tiles x stages units of work, tile-major, are cut into gridDim.x equal ranges, one per block, so every
// block moves the same number of bytes whatever the shape (no partial last wave). Block b takes
// [floor(b U / P), floor((b + 1) U / P)).
__device__ __forceinline__ std::int64_t range_start(std::int64_t b, std::int64_t units, std::int64_t blocks) {
  return b * units / blocks;
}
// The block whose range holds unit u: the largest b with range_start(b) <= u, i.e. ceil((u + 1) P / U) - 1.
__device__ __forceinline__ std::int64_t block_of(std::int64_t u, std::int64_t units, std::int64_t blocks) {
  return ((u + 1) * blocks + units - 1) / units - 1;
}

// The blocks that share a tile: the first of them and how many (parts of the tile through the workspace).
struct TileParts {
  std::int64_t first, parts;
};

__device__ __forceinline__ void add_to(float4& sum, const float4& x) {
  sum.x += x.x;
  sum.y += x.y;
  sum.z += x.z;
  sum.w += x.w;
}

// A unit's place: tile t (its first output row m0 and column n0) and its stage over k. The loop walks units with
// advance(), which divides nothing: 64-bit divisions per stage (a subroutine call each) had made the small-m kernel
// issue-bound (16 calls in its SASS; the mma work of a stage is 16 instructions per warp at m <= 16).
struct Cursor {
  std::int64_t t;
  int stage, m0, n0;
};

__device__ __forceinline__ Cursor cursor_at(std::int64_t u, const Params& p, int bm, int bn) {
  const std::int64_t t = u / p.stages;
  return {t, int(u - t * p.stages), int(t / p.n_tiles) * bm, int(t % p.n_tiles) * bn};
}

__device__ __forceinline__ void advance(Cursor& c, const Params& p, int bm, int bn) {
  if (++c.stage < p.stages) return;
  c.stage = 0;
  ++c.t;
  c.n0 += bn;
  if (c.n0 >= p.n_tiles * bn) {
    c.n0 = 0;
    c.m0 += bm;
  }
}

template <int MT, int NC, int BK, int STAGES, bool Wgmma>
struct Tile {
  static constexpr int kBm = 16 * MT, kBn = 64 * NC;
  static constexpr int kKt = BK / 16;            // 16-row tiles per stage
  static constexpr int kKg = kWarps / NC;        // warps sharing a 64-column chunk (they split the stage's tiles)
  static constexpr int kPerWarp = kKt / kKg;
  static_assert(kWarps % NC == 0 && kPerWarp * kKg == kKt, "warps must split a stage's tiles evenly");
  static constexpr int kA = kBm * BK / 8;        // 16-byte pieces per stage
  static constexpr int kB = kKt * NC * 32;
  static constexpr int kS = (BK / 32) * NC * 8;  // up to BK / 32 scale rows (group size 32)
  static constexpr int kStage = kA + kB + kS;
  static constexpr int kChannel = NC * 8;        // per-channel scales, loaded once
  static constexpr int kRow = kBn + 4;           // float row stride of the reduction buffer (spreads banks)
  // The wgmma path ends a tile from its registers (a warpgroup's chunks are whole over k): no reduction buffer.
  static constexpr int kReduceBytes = Wgmma ? 0 : kBm * kRow * 4;
  static constexpr int kPipelineBytes = (STAGES * kStage + kChannel) * 16;
  // wgmma's swizzled operand atoms need 1024-byte alignment: the kernel rounds its base up, within this padding.
  static constexpr int kAlignPad = Wgmma ? 1024 : 0;
  // The reduction buffer has its own space: the pipeline keeps loading the next tile's stages while a tile ends.
  static constexpr int kSmemBytes = kAlignPad + kPipelineBytes + kReduceBytes;
  static_assert(!Wgmma || ((kBm == 64 || kBm == 128) && kBn == 256 && BK == 64 && kWarps == 8 &&
                           kStage * 16 % 1024 == 0),
                "the wgmma path: 64 or 128 x 256 tiles (two warpgroups, two 64-column chunks each), 64 inputs per "
                "stage (one 128-byte swizzled row per output row), stages on 1024-byte boundaries");
};

// Grouped: scales per group (p.group_size > 0) rather than one row per channel; a template parameter, so the loop
// carries no branch between the two scale sources. Wgmma: the stage's products on Hopper's warpgroup MMA (the
// transposed product: C^T = W^T A^T, the dequantized weights as the register operand, A read by the tensor cores
// from shared memory) instead of mma.sync; the copies, the cursors and the stream-K ending are the same.
template <typename T, int MT, int NC, int BK, int STAGES, bool Grouped, bool Wgmma>
__device__ __forceinline__ void marlin_gemm_body(const Params& p) {
  using G = Tile<MT, NC, BK, STAGES, Wgmma>;
  constexpr int kStages = STAGES;
  using Pair = typename Elem<T>::Pair;
  extern __shared__ uint4 dynamic_smem[];
  uint4* smem = dynamic_smem;
  if constexpr (Wgmma) smem += (1024 - unsigned(__cvta_generic_to_shared(dynamic_smem)) % 1024) % 1024 / 16;
  __shared__ int last_arrival;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int chunk = warp % NC, kg = warp / NC;
  const std::int64_t blocks = gridDim.x, block = blockIdx.x;
  const std::int64_t u_begin = range_start(block, p.units, blocks), u_end = range_start(block + 1, p.units, blocks);
  const int scale_row = p.n_pad / 8;  // 16-byte pieces per scale row (n_pad 16-bit values)
  const int b_row = p.n_pad / 2;      // 16-byte pieces per B row (2 n_pad int32)
  const int scale_rows = Grouped ? (BK > p.group_size ? BK >> p.group_shift : 1) : 0;
  uint4* const channel = smem + kStages * G::kStage;
  float* const red = reinterpret_cast<float*>(smem + kStages * G::kStage + G::kChannel);

  // What this thread copies each stage, fixed for the kernel: A pieces j at row a_r + j kARows and piece column a_c,
  // B pieces j at 16-row tile b_t + j kBRows of chunk b_c (piece `lane`), at most one scale piece (row s_r, chunk
  // s_c). Per tile only the start pointers and the row/column checks change, and per stage an offset: the loop does
  // no index arithmetic beyond that.
  constexpr int kAPer = (G::kA + kThreads - 1) / kThreads, kARows = kThreads / (BK / 8);
  constexpr int kBPer = G::kB / kThreads, kBRows = kThreads / (NC * 32);
  static_assert(kThreads % (BK / 8) == 0 && G::kB % kThreads == 0 && kThreads % (NC * 32) == 0 && G::kS <= kThreads &&
                    kAPer <= 32,
                "the copy geometry: whole rows of pieces per pass, at most 32 A pieces per thread");
  const int a_r = tid / (BK / 8), a_c = tid % (BK / 8);
  const int b_t = tid / (NC * 32), b_c = (tid / 32) % NC;
  const int s_r = tid / (NC * 8), s_c = (tid / 8) % NC;
  const std::int64_t a_step = std::int64_t(kARows) * p.k / 8;  // 16-byte pieces between a thread's A pieces
  const uint4* a_tile = p.a;
  const uint4* b_tile = p.b;
  const uint4* s_tile = p.s;
  unsigned a_rows_ok = 0;  // bit j: A piece j's row is below m
  bool b_ok = false, s_ok = false;
  auto enter_tile = [&](const Cursor& at) {
    a_tile = p.a + (std::int64_t(at.m0 + a_r) * p.k + 8 * a_c) / 8;
    a_rows_ok = 0;
#pragma unroll
    for (int j = 0; j < kAPer; ++j) a_rows_ok |= unsigned(at.m0 + a_r + j * kARows < p.m) << j;
    b_tile = p.b + std::int64_t(b_t) * b_row + (at.n0 / 64 + b_c) * 32 + lane;
    b_ok = at.n0 + 64 * b_c < p.n_pad;
    s_tile = p.s + (at.n0 / 64 + s_c) * 8 + tid % 8;
    s_ok = tid < scale_rows * NC * 8 && at.n0 + 64 * s_c < p.n_pad;
  };

  // A thread's next piece is a fixed step away: one 64-bit add per piece instead of a 64-bit multiply.
  const std::int64_t b_step = std::int64_t(kBRows) * b_row, b_stage_step = std::int64_t(G::kKt) * b_row;
  auto load_stage = [&](const Cursor& at, int buf) {
    uint4* const sa = smem + buf * G::kStage;
    uint4* const sb = sa + G::kA;
    uint4* const ss = sb + G::kB;
    const int k0 = at.stage * BK;
    const bool full = k0 + BK <= p.k;  // every input of the stage exists: only the tile's row/column checks remain
    const uint4* a_src = a_tile + k0 / 8;
#pragma unroll
    for (int j = 0; j < kAPer; ++j, a_src += a_step) {
      if (G::kA % kThreads != 0 && j * kThreads + tid >= G::kA) break;
      const int r = a_r + j * kARows;
      const bool ok = (a_rows_ok >> j & 1u) && (full || k0 + 8 * a_c < p.k);
      // XOR swizzle: ldmatrix rows hit 8 different banks.
      cp_async16(sa + r * (BK / 8) + (a_c ^ (r % 8)), ok ? a_src : p.a, ok);
    }
    const uint4* b_src = b_tile + at.stage * b_stage_step;
#pragma unroll
    for (int j = 0; j < kBPer; ++j, b_src += b_step) {
      const bool ok = b_ok && (full || at.stage * G::kKt + j * kBRows + b_t < p.k_tiles);
      cp_async16(sb + tid + j * kThreads, ok ? b_src : p.b, ok);
    }
    if (s_ok) {
      const int g = (k0 >> p.group_shift) + s_r;
      const bool ok = g < p.groups;
      cp_async16(ss + tid, ok ? s_tile + std::int64_t(g) * scale_row : p.s, ok);
    }
  };

  // Per-channel: the tile's one scale row, rearranged into the grouped order the loop reads.
  auto load_channel_scales = [&](int n0) {
    T* const dst = reinterpret_cast<T*>(channel);
    const T* const src = static_cast<const T*>(static_cast<const void*>(p.s));
    for (int i = tid; i < G::kBn; i += kThreads) {
      const int c = i / 64, q = i % 64;
      const int col = n0 + 64 * c + q / 8 + 8 * (q % 8);  // grouped order: entry 8i + j is column i + 8j
      dst[i] = col < p.n_pad ? src[col - col % 32 + single_scale_position(col % 32)] : Elem<T>::from_float(0.f);
    }
  };

  float acc[MT][8][4] = {};
  // Wgmma: warpgroup `group` owns 64-column chunks 2 group and 2 group + 1 over all of a stage's inputs; warp `quarter`
  // of it holds (the wgmma layout) columns 16 quarter .. + 15 of each chunk: its lane's word `quarter` of the chunk's
  // 16x64 B piece, which holds exactly the mma.sync B fragments of those columns, i.e. the A fragment of the
  // transposed product. The tile's kBm rows are the N of one wgmma: kBm / 2 accumulators per chunk and thread.
  constexpr int kWgmmaN = Wgmma ? G::kBm : 64;  // (the mma.sync instantiations compile, never call, the lambdas)
  constexpr int kAcc = kWgmmaN / 2;
  float wacc[2][kAcc] = {};
  const int group = warp / 4, quarter = warp % 4;
  bool fresh = true;  // the next stage is the first of this block's part of a tile: its first products overwrite
  // The A fragments of 16-row tile t of a stage, chunk cc: (q - 8) s of the thread's word, rows l / 4 (the first
  // 8-column half) and l / 4 + 8 (the second), inputs 2 (l % 4) .. and + 8 ... Zero past k and past n_pad: every
  // wgmma is issued (one under a branch the compiler cannot prove uniform over the warpgroup is serialized, C7520).
  auto dequant_tile = [&](const Cursor& at, const uint4* stage_base, int t, std::uint32_t (&frag)[2][4]) {
    const std::uint32_t* const sb = reinterpret_cast<const std::uint32_t*>(stage_base + G::kA);
    const std::uint32_t* const ss = reinterpret_cast<const std::uint32_t*>(stage_base + G::kA + G::kB);
    const std::uint32_t* const sc = reinterpret_cast<const std::uint32_t*>(channel);
    const bool tile_ok = at.stage * G::kKt + t < p.k_tiles;
#pragma unroll
    for (int cc = 0; cc < 2; ++cc) {
      const int chunk = 2 * group + cc;
      if (!tile_ok || at.n0 + 64 * chunk >= p.n_pad) {
        frag[cc][0] = frag[cc][1] = frag[cc][2] = frag[cc][3] = 0u;
        continue;
      }
      const std::uint32_t word = sb[((t * NC + chunk) * 32 + lane) * 4 + quarter];
      const int srow = !Grouped || BK <= p.group_size ? 0 : (16 * t) >> p.group_shift;
      const std::uint32_t scale_word = Grouped ? ss[(srow * NC * 8 + chunk * 8 + lane / 4) * 4 + quarter]
                                               : sc[(chunk * 8 + lane / 4) * 4 + quarter];
      const Pair both = bits_as<Pair>(scale_word);
      std::uint32_t b[4];
      dequant_word<T>(word, Pair{both.x, both.x}, Pair{both.y, both.y}, b);
      frag[cc][0] = b[0];
      frag[cc][1] = b[2];
      frag[cc][2] = b[1];
      frag[cc][3] = b[3];
    }
  };
  // Per 16-row tile: dequantize, then issue its two wgmmas as one group; the next tile's dequantization overlaps
  // them (two fragment buffers: waiting for all groups but the newest frees the one about to be written). The
  // stage's last group stays in flight into the next stage (its buffer is not refilled until the one after).
  auto compute_stage_wgmma = [&](const Cursor& at, int buf) {
    const uint4* const sa = smem + buf * G::kStage;
    const std::uint64_t desc = kmajor_sw128_desc(sa);
    std::uint32_t frag[2][2][4];
#pragma unroll
    for (int t = 0; t < G::kKt; ++t) {
      dequant_tile(at, sa, t, frag[t % 2]);
      wgmma_fence();
#pragma unroll
      for (int cc = 0; cc < 2; ++cc) {
        // + 32 B per tile
        wgmma_m64k16<T, kWgmmaN>(wacc[cc], frag[t % 2][cc], desc + 2 * t, t > 0 || !fresh);
      }
      wgmma_commit();
      wgmma_wait<1>();
    }
    fresh = false;
  };
  auto compute_stage = [&](const Cursor& at, int buf) {
    const uint4* const sa = smem + buf * G::kStage;
    const uint4* const sb = sa + G::kA;
    const uint4* const ss = sb + G::kB;
    const int stage = at.stage;
    if (at.n0 + 64 * chunk >= p.n_pad) return;
#pragma unroll
    for (int j = 0; j < G::kPerWarp; ++j) {
      const int t = kg + j * G::kKg;
      if (stage * G::kKt + t >= p.k_tiles) break;  // tiles are in increasing order; the rest are past k
      const uint4 words = sb[t * NC * 32 + chunk * 32 + lane];
      const int srow = !Grouped || BK <= p.group_size ? 0 : (16 * t) >> p.group_shift;
      const uint4 scales = Grouped ? ss[srow * NC * 8 + chunk * 8 + lane / 4] : channel[chunk * 8 + lane / 4];
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
        std::uint32_t b[4];
        dequant_word<T>(word[tile], s0, s1, b);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Elem<T>::mma(acc[mt][2 * tile], frag_a[mt], b[0], b[1]);
          Elem<T>::mma(acc[mt][2 * tile + 1], frag_a[mt], b[2], b[3]);
        }
      }
    }
  };

  // What the two endings of a tile share. Output (gm, gn) = v + bias, rounded once; nothing past m or n.
  auto write_output = [&](int gm, int gn, float v) {
    if (gm >= p.m || gn >= p.n) return;
    if (p.bias != nullptr) v += Elem<T>::to_float(static_cast<const T*>(p.bias)[gn]);
    static_cast<T*>(p.c)[std::int64_t(gm) * p.n + gn] = Elem<T>::from_float(v);
  };
  // The blocks whose ranges hold tile t's units: the first of them and how many.
  auto tile_parts_of = [&](std::int64_t t) {
    const std::int64_t first = block_of(t * p.stages, p.units, blocks);
    return TileParts{first, block_of((t + 1) * p.stages - 1, p.units, blocks) - first + 1};
  };
  // Once this block's part of tile t is in the workspace: whether it is the last of the tile's blocks to arrive,
  // which then sees every part (the counter wraps back to zero for the next launch).
  auto last_to_arrive = [&](std::int64_t t, std::int64_t parts) {
    __threadfence();  // this block's part is visible to the device before the tile's counter moves
    __syncthreads();
    if (tid == 0) last_arrival = atomicInc(&p.counters[t], unsigned(parts - 1)) == unsigned(parts - 1);
    __syncthreads();
    if (!last_arrival) return false;
    __threadfence();
    return true;
  };

  // The wgmma path's end of a tile, from the registers (a warpgroup's chunks are whole over the block's range), which
  // it only reads: an accumulator written outside the wgmma (zeroed, or summed into) makes nvcc join two values of
  // it where the loop goes on, and ptxas then waits for the in-flight products there every stage (C7517). A part
  // goes to the workspace as each thread's accumulators in register order (float4 quad j of chunk cc at
  // (cc kAcc / 4 + j) kThreads + tid: whole 512-byte runs per warp), and the last block to arrive sums the parts
  // in block order (deterministic: the same whichever arrives last), four quads at a time, and writes the outputs.
  // Quad i of chunk cc holds output rows 8 i + 2 (l % 4) + {0, 1} (the transposed product's columns) at columns
  // 16 quarter + l / 4 + {0, 8} of the chunk (its rows): accumulator 4 i + 2 e + h is row + h, column + 8 e.
  // Quad i of chunk cc (accumulators 4 i .. 4 i + 3) of a thread, in the order described above.
  auto wgmma_quad = [&](int cc, int i) {
    return make_float4(wacc[cc][4 * i], wacc[cc][4 * i + 1], wacc[cc][4 * i + 2], wacc[cc][4 * i + 3]);
  };
  auto store_quad = [&](const Cursor& at, int cc, int i, const float4& v) {
    const int row = at.m0 + 2 * (lane % 4) + 8 * i;
    const int col = at.n0 + 64 * (2 * group + cc) + 16 * quarter + lane / 4;
    write_output(row, col, v.x);
    write_output(row + 1, col, v.y);
    write_output(row, col + 8, v.z);
    write_output(row + 1, col + 8, v.w);
  };
  auto finish_tile_wgmma = [&](const Cursor& at) {
    wgmma_wait<0>();  // the tile's last products
    fresh = true;
    const std::int64_t t = at.t;
    const TileParts tile = tile_parts_of(t);
    constexpr int kQuadsPer = kAcc / 4, kQuads = 2 * kQuadsPer;  // per chunk, per thread
    if (tile.parts == 1) {
#pragma unroll
      for (int cc = 0; cc < 2; ++cc) {
#pragma unroll
        for (int i = 0; i < kQuadsPer; ++i) store_quad(at, cc, i, wgmma_quad(cc, i));
      }
      return;
    }
    float4* const workspace = reinterpret_cast<float4*>(p.workspace);
    float4* const slot = workspace + (block + t) * (kQuads * kThreads) + tid;
#pragma unroll
    for (int cc = 0; cc < 2; ++cc) {
#pragma unroll
      for (int i = 0; i < kQuadsPer; ++i) slot[(cc * kQuadsPer + i) * kThreads] = wgmma_quad(cc, i);
    }
    if (!last_to_arrive(t, tile.parts)) return;
    const float4* const tile_parts = workspace + (tile.first + t) * (kQuads * kThreads) + tid;
    constexpr int kBatch = 4;
    static_assert(kQuadsPer % kBatch == 0, "whole batches of quads per chunk");
#pragma unroll
    for (int q0 = 0; q0 < kQuads; q0 += kBatch) {
      float4 sum[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) sum[b] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 1
      for (std::int64_t part = 0; part < tile.parts; ++part) {
#pragma unroll
        for (int b = 0; b < kBatch; ++b) {
          add_to(sum[b], __ldcg(tile_parts + part * (kQuads * kThreads) + (q0 + b) * kThreads));
        }
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) store_quad(at, (q0 + b) / kQuadsPer, (q0 + b) % kQuadsPer, sum[b]);
    }
  };

  // The end of this block's part of tile t: the warps of a chunk hold partial sums over different 16-row tiles; add
  // them in shared memory in warp order. A tile done by one block is written out; otherwise the part goes to its
  // workspace slot (block + tile: unique, as both only grow along the ranges) and the last block of the tile to
  // arrive adds all parts in block order (deterministic: the same order whichever arrives last), adds the bias,
  // rounds once and writes the output.
  auto finish_tile = [&](const Cursor& at) {
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
              acc[mt][h][e] = 0.f;
            }
          }
        }
      }
      __syncthreads();
    }
    const std::int64_t t = at.t;
    const TileParts tile = tile_parts_of(t);
    // A part is the tile in float32, moved as float4 quads: quad q is row q / (kBn / 4), columns 4 (q % (kBn / 4))
    // .. + 3 (16-byte aligned in red, whose row stride kBn + 4 is a multiple of 4, and in the workspace).
    constexpr int kSlot = G::kBm * G::kBn, kQuads = kSlot / 4, kRowQuads = G::kBn / 4;
    constexpr int kPerThread = kQuads / kThreads, kBatch = kPerThread < 4 ? kPerThread : 4;
    static_assert(kQuads % kThreads == 0 && kPerThread % kBatch == 0, "every thread moves whole batches of quads");
    auto red_quad = [&](int q) -> float4& {
      return *reinterpret_cast<float4*>(red + (q / kRowQuads) * G::kRow + 4 * (q % kRowQuads));
    };
    auto store_quad = [&](int q, const float4& v) {
      const int row = at.m0 + q / kRowQuads, col = at.n0 + 4 * (q % kRowQuads);
      write_output(row, col, v.x);
      write_output(row, col + 1, v.y);
      write_output(row, col + 2, v.z);
      write_output(row, col + 3, v.w);
    };
    if (tile.parts == 1) {
      for (int q = tid; q < kQuads; q += kThreads) store_quad(q, red_quad(q));
      return;
    }
    float4* const workspace = reinterpret_cast<float4*>(p.workspace);
    for (int q = tid; q < kQuads; q += kThreads) workspace[(block + t) * kQuads + q] = red_quad(q);
    if (!last_to_arrive(t, tile.parts)) return;
    // The parts in block order, each thread with a batch of up to 4 quads in flight per part (and, for the small
    // tiles, 4 parts at once): summing element by element made a chain of L2 round trips, 64 per part and thread for
    // the 64 x 256 tile, now 4 (its accumulators leave no registers for 4 parts at once: that spilled).
    const float4* const tile_parts = workspace + (tile.first + t) * kQuads;
#pragma unroll 1
    for (int q0 = 0; q0 < kPerThread; q0 += kBatch) {
      float4 v[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) v[b] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll(MT >= 4 ? 1 : 4)
      for (std::int64_t part = 0; part < tile.parts; ++part) {
#pragma unroll
        for (int b = 0; b < kBatch; ++b) add_to(v[b], __ldcg(tile_parts + part * kQuads + (q0 + b) * kThreads + tid));
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) store_quad((q0 + b) * kThreads + tid, v[b]);
    }
  };

  // Two cursors over this block's units: the one being loaded runs kAhead stages ahead of the one being computed.
  // mma.sync refills the buffer computed in the previous iteration (kStages - 1 ahead); wgmma leaves the previous
  // stage's last products in flight across the barrier, so it refills the one before (kStages - 2 ahead).
  constexpr int kAhead = Wgmma ? kStages - 2 : kStages - 1;
  static_assert(kAhead >= 1, "at least one stage in flight");
  const std::int64_t count = u_end - u_begin;
  Cursor loading = cursor_at(u_begin, p, G::kBm, G::kBn), computing = loading;
  enter_tile(loading);
  auto load_next = [&](int buf) {
    load_stage(loading, buf);
    advance(loading, p, G::kBm, G::kBn);
    if (loading.stage == 0) enter_tile(loading);
  };
  for (int i = 0; i < kAhead; ++i) {
    if (i < count) load_next(i);
    cp_async_commit();
  }
  int buf = 0, load_buf = kAhead;
  for (std::int64_t i = 0; i < count; ++i) {
    cp_async_wait<kAhead - 1>();
    if constexpr (Wgmma) fence_proxy_async();  // this thread's copies, visible to the tensor cores after the barrier
    __syncthreads();  // stage data visible to all; every warp is done with the buffer refilled next
    if (i + kAhead < count) load_next(load_buf);
    cp_async_commit();
    load_buf = load_buf + 1 == kStages ? 0 : load_buf + 1;
    if (!Grouped && (i == 0 || computing.stage == 0)) {  // a new tile: its per-channel scales
      load_channel_scales(computing.n0);
      __syncthreads();
    }
    if constexpr (Wgmma) {
      compute_stage_wgmma(computing, buf);
    } else {
      compute_stage(computing, buf);
    }
    buf = buf + 1 == kStages ? 0 : buf + 1;
    if (i + 1 == count || computing.stage + 1 == p.stages) {
      if constexpr (Wgmma) {
        finish_tile_wgmma(computing);
      } else {
        finish_tile(computing);
      }
    }
    advance(computing, p, G::kBm, G::kBn);
  }
  if constexpr (Wgmma) wgmma_wait<0>();
  cp_async_wait<0>();
}

template <typename T, int MT, int NC, int BK, int STAGES, bool Grouped>
__global__ void __launch_bounds__(kThreads) marlin_gemm_kernel(Params p) {
  marlin_gemm_body<T, MT, NC, BK, STAGES, Grouped, false>(p);
}

// Its own name, so that the SASS check can ask for HGMMA in it; a trap on every target but sm_90a.
template <typename T, int MT, int NC, int BK, int STAGES, bool Grouped>
__global__ void __launch_bounds__(kThreads) marlin_gemm_wgmma_kernel(Params p) {
#if QH_WGMMA
  marlin_gemm_body<T, MT, NC, BK, STAGES, Grouped, true>(p);
#else
  __trap();
#endif
}

__global__ void permute_columns_kernel(const std::uint16_t* __restrict__ a, const std::int32_t* __restrict__ perm,
                                       std::int64_t m, std::int64_t k, std::uint16_t* __restrict__ out) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * k) return;
  const std::int64_t row = i / k;
  out[i] = a[row * k + perm[i % k]];
}

template <typename T, int Config, bool Grouped>
auto* kernel_of() {
  constexpr MarlinGemmConfig c = kConfigs[Config];
  if constexpr (c.arch == 90) {
    return marlin_gemm_wgmma_kernel<T, c.m_tiles, c.n_chunks, c.bk, c.stages, Grouped>;
  } else {
    return marlin_gemm_kernel<T, c.m_tiles, c.n_chunks, c.bk, c.stages, Grouped>;
  }
}

template <typename T, int Config>
int smem_bytes_of() {
  constexpr MarlinGemmConfig c = kConfigs[Config];
  return Tile<c.m_tiles, c.n_chunks, c.bk, c.stages, c.arch == 90>::kSmemBytes;
}

// Per kernel and device, what the host asks the driver once: the dynamic shared-memory limit raised (needed above
// 48 KB) and the resident blocks per SM. Asking on every call put two driver calls before each launch.
struct KernelSetup {
  cudaError_t error = cudaErrorNotReady;  // cudaErrorNotReady: not asked yet on this device
  int blocks_per_sm = 1;
};
constexpr int kMaxDevices = 64;

template <typename T, int Config, bool Grouped>
KernelSetup setup_of(int device) {
  static std::mutex mutex;
  static KernelSetup setups[kMaxDevices];
  auto* kernel = kernel_of<T, Config, Grouped>();
  const int smem = smem_bytes_of<T, Config>();
  KernelSetup fresh;
  KernelSetup* setup = device >= 0 && device < kMaxDevices ? &setups[device] : &fresh;
  const std::lock_guard<std::mutex> lock(mutex);
  if (setup->error == cudaErrorNotReady) {
    DeviceInfo info;
    setup->error = device_info(device, &info);
    // The wgmma kernel's machine code exists for sm_90a alone: elsewhere it would be the trap.
    if (setup->error == cudaSuccess && !marlin_gemm_config_runs_on(Config, 10 * info.cc_major + info.cc_minor)) {
      setup->error = cudaErrorInvalidDeviceFunction;
    }
    if (setup->error == cudaSuccess) {
      setup->error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    }
    if (setup->error == cudaSuccess) {
      setup->error = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&setup->blocks_per_sm, kernel, kThreads, smem);
    }
  }
  return *setup;
}

// Runs f(kernel, smem bytes, setup) on the current device once the kernel's setup there succeeded.
template <typename T, int Config, bool Grouped, typename F>
cudaError_t with_kernel(F&& f) {
  int device = -1;
  if (const cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  const KernelSetup setup = setup_of<T, Config, Grouped>(device);
  return setup.error != cudaSuccess ? setup.error
                                    : f(kernel_of<T, Config, Grouped>(), smem_bytes_of<T, Config>(), setup);
}

template <typename T, bool Grouped, typename F>
cudaError_t dispatch(int config, F&& f) {
  switch (config) {
    case 0: return with_kernel<T, 0, Grouped>(f);
    case 1: return with_kernel<T, 1, Grouped>(f);
    case 2: return with_kernel<T, 2, Grouped>(f);
    case 3: return with_kernel<T, 3, Grouped>(f);
    case 4: return with_kernel<T, 4, Grouped>(f);
    default: return cudaErrorInvalidValue;
  }
}

template <typename F>
cudaError_t dispatch(DType dtype, int config, bool grouped, F&& f) {
  if (dtype == DType::F16) return grouped ? dispatch<__half, true>(config, f) : dispatch<__half, false>(config, f);
  return grouped ? dispatch<__nv_bfloat16, true>(config, f) : dispatch<__nv_bfloat16, false>(config, f);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

}  // namespace

int marlin_gemm_config_count() { return kConfigCount; }

MarlinGemmConfig marlin_gemm_config(int index) {
  return index >= 0 && index < kConfigCount ? kConfigs[index] : MarlinGemmConfig{};
}

bool marlin_gemm_config_runs_on(int config, int arch) {
  if (config < 0 || config >= kConfigCount) return false;
  return kConfigs[config].arch == 90 ? arch == 90 : arch >= kConfigs[config].arch;
}

std::int64_t marlin_gemm_stages(int config, std::int64_t k) {
  const int bk = marlin_gemm_config(config).bk;
  return (k + bk - 1) / bk;
}

namespace {
// Column tiles of configuration `config` for n outputs (a row of tiles).
std::int64_t column_tiles(int config, std::int64_t n) {
  const int bn = 64 * marlin_gemm_config(config).n_chunks;
  return (n + bn - 1) / bn;
}
}  // namespace

std::int64_t marlin_gemm_tiles(int config, std::int64_t m, std::int64_t n) {
  const int bm = 16 * marlin_gemm_config(config).m_tiles;
  return column_tiles(config, n) * ((m + bm - 1) / bm);
}

std::int64_t marlin_gemm_max_blocks(int config, std::int64_t m, std::int64_t n, std::int64_t k) {
  const std::int64_t tiles = marlin_gemm_tiles(config, m, n);
  return std::min(tiles * marlin_gemm_stages(config, k), kMaxBlocksPerTile * tiles);
}

std::int64_t marlin_gemm_workspace_floats(int config, int blocks, std::int64_t m, std::int64_t n) {
  const MarlinGemmConfig c = marlin_gemm_config(config);
  return (blocks + marlin_gemm_tiles(config, m, n)) * 16 * c.m_tiles * 64 * c.n_chunks;
}

MarlinGemmPlan marlin_gemm_plan(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype, int sm_count,
                                int arch) {
  MarlinGemmPlan plan;
  plan.config = m <= 16 ? 0 : m <= 32 ? 1 : arch != 90 || m < QH_WGMMA_MIN_M ? 2 : m <= 64 ? 3 : 4;
  // As many blocks as fit on the GPU at once (at most kBlocksPerSm per SM), so the one wave is the whole grid.
  int per_sm = 1;
  // The grouped kernel's occupancy: the per-channel one has the same shared memory and no more registers.
  if (dispatch(dtype, plan.config, /*grouped=*/true, [&](auto*, int, const KernelSetup& setup) {
        per_sm = setup.blocks_per_sm;
        return cudaSuccess;
      }) != cudaSuccess || per_sm < 1) {
    cudaGetLastError();  // clear it: the launch reports real errors
    per_sm = 1;
  }
  const std::int64_t resident = std::int64_t(sm_count) * std::min(per_sm, kBlocksPerSm);
  const std::int64_t tiles = marlin_gemm_tiles(plan.config, m, n), stages = marlin_gemm_stages(plan.config, k);
  const std::int64_t min_units = kConfigs[plan.config].min_units;
  // When at least two blocks per tile fit, cut every tile into the same number of parts (the ranges then start on
  // tile boundaries: H200, M = 64 on 8192 x 8192, 128 such blocks took 70 us where 132 straddling ones took 87);
  // otherwise stream-K over the resident blocks.
  const std::int64_t parts = std::min({resident / tiles, stages / min_units, kMaxBlocksPerTile});
  const std::int64_t wanted = parts >= 2 ? tiles * parts : std::min(resident, tiles * stages / min_units);
  plan.blocks = int(std::max<std::int64_t>(1, std::min(wanted, marlin_gemm_max_blocks(plan.config, m, n, k))));
  return plan;
}

cudaError_t launch_marlin_gemm(const MarlinGemmArgs& args, cudaStream_t stream) {
  const MarlinGemmPlan& plan = args.plan;
  const bool group_ok = args.group_size == -1 || args.group_size == 32 || args.group_size == 64 ||
                        args.group_size == 128;
  if (args.m <= 0 || args.k <= 0 || args.n <= 0 || args.k % 8 != 0 || args.n_pad % 64 != 0 || args.n > args.n_pad ||
      args.k_pad % 16 != 0 || args.k > args.k_pad || !group_ok || plan.config < 0 || plan.config >= kConfigCount ||
      plan.blocks < 1 || plan.blocks > marlin_gemm_max_blocks(plan.config, args.m, args.n, args.k) ||
      !args.workspace || !args.counters || !args.a || !args.b || !args.s || !args.c || args.k_pad > (1LL << 30) ||
      args.n_pad > (1LL << 30) || !aligned16(args.a) || !aligned16(args.b) || !aligned16(args.s) ||
      args.dtype == DType::F32) {
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
  p.counters = args.counters;
  p.m = int(args.m), p.k = int(args.k), p.n = int(args.n), p.n_pad = int(args.n_pad);
  p.k_tiles = int((args.k + 15) / 16);
  p.groups = int(groups);
  p.group_size = groups > 1 ? args.group_size : 0;
  p.group_shift = p.group_size == 32 ? 5 : p.group_size == 64 ? 6 : 7;
  p.stages = int(marlin_gemm_stages(plan.config, args.k));
  p.n_tiles = int(column_tiles(plan.config, args.n));
  p.units = marlin_gemm_tiles(plan.config, args.m, args.n) * p.stages;
  return dispatch(args.dtype, plan.config, p.group_size > 0, [&](auto* kernel, int smem, const KernelSetup&) {
    kernel<<<unsigned(plan.blocks), kThreads, smem, stream>>>(p);
    return cudaGetLastError();
  });
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
