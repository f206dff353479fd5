// What the two Marlin GEMM kernels share (included by marlin_gemm.cu only): the element types' mma and exponent
// tricks, the dequantization of a Marlin word, the launch parameters, the stream-K ranges and cursors, and the end of
// a tile (the output write and the last-to-arrive protocol of the workspace). Facts used are cited in
// marlin_gemm.cu's header.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace qh::kernels::marlin {

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

// A word whose eight fields are all 8: with a scale of 0 it dequantizes to +0 exactly in both dtypes ((8 - 8) 0), so
// a select can stand in for a branch where a fragment must be zero (past k or n_pad).
constexpr std::uint32_t kZeroWord = 0x88888888u;

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
  unsigned* counters;  // one per tile, zero between launches (the last block done with a tile resets its own)
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

// Unit u of a walk over every `stride`-th tile from tile `rank` (tiles stride w + rank, w = u / stages): the blocks
// of a cluster of `stride` CTAs walk adjacent column tiles side by side (the wgmma kernel's pairs; 1 and 0 walk every
// tile). n_tiles is a multiple of stride, so the tiles of one walk step share their rows.
__device__ __forceinline__ Cursor cursor_at(std::int64_t u, const Params& p, int bm, int bn, int stride = 1,
                                            int rank = 0) {
  const std::int64_t w = u / p.stages, t = w * stride + rank;
  return {t, int(u - w * p.stages), int(t / p.n_tiles) * bm, int(t % p.n_tiles) * bn};
}

__device__ __forceinline__ void advance(Cursor& c, const Params& p, int bm, int bn, int stride = 1) {
  if (++c.stage < p.stages) return;
  c.stage = 0;
  c.t += stride;
  c.n0 += stride * bn;
  if (c.n0 >= p.n_tiles * bn) {
    c.n0 -= p.n_tiles * bn;
    c.m0 += bm;
  }
}

// Column col's scale in the per-channel layout (one permuted row), zero past n_pad.
template <typename T>
__device__ __forceinline__ T channel_scale(const Params& p, int col) {
  const T* const row = static_cast<const T*>(static_cast<const void*>(p.s));
  return col < p.n_pad ? row[col - col % 32 + single_scale_position(col % 32)] : Elem<T>::from_float(0.f);
}

// Output (gm, gn) = v + bias, rounded once; nothing past m or n.
template <typename T>
__device__ __forceinline__ void write_output(const Params& p, int gm, int gn, float v) {
  if (gm >= p.m || gn >= p.n) return;
  if (p.bias != nullptr) v += Elem<T>::to_float(static_cast<const T*>(p.bias)[gn]);
  static_cast<T*>(p.c)[std::int64_t(gm) * p.n + gn] = Elem<T>::from_float(v);
}

// The blocks of a walk (`units` cut into `blocks` ranges) whose ranges hold the units of its tile w: the first of them
// and how many.
__device__ __forceinline__ TileParts tile_parts_of(const Params& p, std::int64_t w, std::int64_t units,
                                                   std::int64_t blocks) {
  const std::int64_t first = block_of(w * p.stages, units, blocks);
  return TileParts{first, block_of((w + 1) * p.stages - 1, units, blocks) - first + 1};
}

// Once this block's part of tile t is in the workspace: whether it is the last of the tile's blocks to arrive,
// which then sees every part (the counter wraps back to zero for the next launch). sync() is a barrier over the
// threads that end the tile (thread 0 among them). The barrier orders every thread's part before thread 0's
// device-scope fence and counter (fences are cumulative in the PTX memory model; CUTLASS's GenericBarrier arrives
// the same way, a fact used): one fence where each thread fenced its own stores, which stalled every warp of the
// block on MEMBAR (H200, M <= 64: 0-2 % faster on every shape timed).
template <typename Sync>
__device__ __forceinline__ bool last_to_arrive(const Params& p, std::int64_t t, std::int64_t parts, Sync&& sync) {
  __shared__ int last_arrival;
  sync();
  if (threadIdx.x == 0) {
    __threadfence();
    last_arrival = atomicInc(&p.counters[t], unsigned(parts - 1)) == unsigned(parts - 1);
    if (last_arrival) __threadfence();
  }
  sync();
  return last_arrival;
}

// Whether every block of walk step w (tile parts `tile`) works on that step alone: the blocks' ranges start and end
// on its boundaries, so (in a persistent grid, every block resident from the launch) they all reach its end at about
// the same time.
__device__ __forceinline__ bool parts_start_together(const Params& p, std::int64_t w, const TileParts& tile,
                                                     std::int64_t units, std::int64_t blocks) {
  return range_start(tile.first, units, blocks) == w * p.stages &&
         range_start(tile.first + tile.parts, units, blocks) == (w + 1) * p.stages;
}

// The fix-up spread over a tile's blocks, where they all start and end on its boundaries: each sums its share of the
// tile (share s: every parts-th quad from s, for block tile.first + s) once every part is in the workspace, instead of
// the last block summing all of them while the others exit. Tile t's counter holds the arrivals (bits 0-7), the
// departures (8-15) and the shares claimed (bit 16 + s), so at most kSpreadMaxParts parts. A block waits for the
// others' arrivals at most QH_SPREAD_WAIT_NS: in a persistent grid they are resident together, but nothing promises
// it (an SM limit under MPS, another kernel beside this one), and a block must not wait on one that cannot start.
// A block that saw every arrival claims its own share; the last to arrive sums its own, then claims and sums every
// share still unclaimed (a block that gave up, or was slow to look). Each share is summed once, in block order: the
// same bits whoever sums it. The last block to depart zeroes the counter for the next launch.
#ifndef QH_SPREAD_WAIT_NS
#define QH_SPREAD_WAIT_NS 20000
#endif
constexpr int kSpreadMaxParts = 16;
// The arrival count's mask (the departure count's too, once shifted), the departures' and claims' shifts.
constexpr unsigned kSpreadArrivals = 0xffu, kSpreadDepartures = 8, kSpreadClaims = 16;

// The global timer's low 32 bits (ns): the difference of two readings is exact within 4.2 s, all a bounded wait
// needs, in one register.
__device__ __forceinline__ unsigned global_ns_lo() {
  unsigned t;
  asm volatile("mov.u32 %0, %%globaltimer_lo;" : "=r"(t));
  return t;
}

__device__ __forceinline__ void spread_depart(unsigned* counter, int parts) {
  const unsigned before = atomicAdd(counter, 1u << kSpreadDepartures);
  if (((before >> kSpreadDepartures) & kSpreadArrivals) + 1 == unsigned(parts)) atomicExch(counter, 0u);
}

struct SpreadTurn {
  bool own;   // this block sums its own share now
  bool last;  // it arrived last: after its own share it sweeps the unclaimed ones (spread_sweep)
};

// Once this block's part of tile t is in the workspace (sync(): a barrier over the threads that end the tile, thread
// 0 among them; the fences are last_to_arrive's).
template <typename Sync>
__device__ __forceinline__ SpreadTurn spread_arrive(const Params& p, std::int64_t t, int parts, int share,
                                                    Sync&& sync) {
  __shared__ SpreadTurn turn;
  sync();
  if (threadIdx.x == 0) {
    unsigned* const counter = &p.counters[t];
    __threadfence();
    const bool last = (atomicAdd(counter, 1u) & kSpreadArrivals) + 1 == unsigned(parts);
    bool own = last;
    if (!last) {
      const volatile unsigned* const seen = counter;
      const unsigned start = global_ns_lo();
      while ((*seen & kSpreadArrivals) < unsigned(parts) && global_ns_lo() - start < unsigned(QH_SPREAD_WAIT_NS)) {
        __nanosleep(64);
      }
      if ((*seen & kSpreadArrivals) == unsigned(parts)) {
        own = ((atomicOr(counter, 1u << (kSpreadClaims + share)) >> (kSpreadClaims + share)) & 1u) == 0;
      }
      spread_depart(counter, parts);
    }
    if (own) __threadfence();
    turn = {own, last};
  }
  sync();
  return turn;
}

// The last block, after its own share: the shares it claims (a bit each), which no other block sums.
template <typename Sync>
__device__ __forceinline__ unsigned spread_sweep(const Params& p, std::int64_t t, int parts, int share, Sync&& sync) {
  __shared__ unsigned claimed;
  if (threadIdx.x == 0) {
    unsigned* const counter = &p.counters[t];
    const unsigned others = ((1u << parts) - 1u) & ~(1u << share);
    claimed = others & ~(atomicOr(counter, others << kSpreadClaims) >> kSpreadClaims);
    spread_depart(counter, parts);
  }
  sync();
  return claimed;
}

}  // namespace qh::kernels::marlin
