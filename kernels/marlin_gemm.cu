// Marlin-layout fp16/bf16 x int4 GEMM for sm_80+ (the contract is in kernels.h). Facts used from IST-DASLab Marlin
// and vLLM's gptq_marlin (FORMATS.md 3.1, 3.4), not their code: in each 16x64 piece of a B tile row, thread t of a
// warp owns 16 consecutive bytes, one int32 per 16x16 tile; that word holds the thread's mma.sync m16n8k16 B
// fragments of the tile's two 8-column halves (k rows 2(t%4), +1, +8, +9 at column t/4), nibbles ordered
// (half 0: k, k+8), (half 1: k, k+8), (half 0: k+1, k+9), (half 1: k+1, k+9) read from bit 0 up. Grouped scales
// are stored so that 16 bytes at 8 (t/4) give the thread the scales of its 8 columns of a 64-column chunk.
#include <cudaTypedefs.h>  // the driver's cuTensorMapEncodeTiled type

#include <algorithm>
#include <mutex>
#include <type_traits>
#include <utility>

#include "kernels/kernels.h"
#include "kernels/marlin_gemm_common.cuh"
#include "kernels/marlin_gemm_tma.cuh"
#include "kernels/marlin_gemm_wgmma.cuh"

namespace qh::kernels {

namespace {

using namespace marlin;  // the pieces the kernels share, the Hopper feed and the wgmma kernel

constexpr int kThreads = 256;  // 8 warps
constexpr int kWarps = kThreads / 32;
static_assert(kConsumers == kThreads, "the TMA-fed tiles compute as the cp.async ones do");

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
// H200, 2026-12-02: 4, 5 and 6 stages within 1 % of each other at M = 64..1024 with the cp.async pipeline; with the
// producer warpgroup and the 256 x 128 tile (36 KB stages, whose consumers wait for full stages: the tiles re-read
// A from L2) 6 took 1-2 % off every M = 64 / 256 / 1024 shape against 5 (one run, 2026-12-02); 7 do not fit.
#ifndef QH_WGMMA_STAGES
#define QH_WGMMA_STAGES 6
#endif
#ifndef QH_WGMMA_MIN_UNITS
#define QH_WGMMA_MIN_UNITS 4
#endif
#ifndef QH_WGMMA_MIN_M
#define QH_WGMMA_MIN_M 33
#endif
// m <= 64 on CC 9.0 takes the 64 x 128 tile at two blocks per SM (16 consumer warps to cover the dequantization
// chain) where 64 x 256 tiles would give each SM fewer than this many stages of work, and 64 x 256 at one block per
// SM otherwise (half the L2 reads of A). H200, 2026-12-02, M = 64, 64 x 128 against 64 x 256: 4096 x 4096 (7.8
// stages per SM) 25.3 -> 20.7 us, 4096 x 11008 / 11008 x 4096 (21) 5-7 % faster, 8192 x 8192 (31) 1 %, but
// 8192 x 28672 / 28672 x 8192 (109) 5-7 % slower; the threshold sits between 31 and 109.
#ifndef QH_WGMMA_SHORT_MAX_UNITS_PER_SM
#define QH_WGMMA_SHORT_MAX_UNITS_PER_SM 64
#endif
// The smallest m given the 256 x 128 tile (one chunk per warpgroup, wgmma N = 256: half the dequantization per
// product of the 128 x 256 one, twice the reads of A). H200, 2026-12-02: against 128 x 256 at M = 256 / 1024 it took
// 3-15 % off every shape (8192 x 28672 M = 1024 894 -> 761 us); M = 128 was not timed (the benchmarks' M are 1, 16,
// 64, 256, 1024), so the threshold is the midpoint.
#ifndef QH_WGMMA_TALL_MIN_M
#define QH_WGMMA_TALL_MIN_M 129
#endif
// The fewest 256 x 128 tiles for which the plan runs them in CTA pairs that share their A loads (configuration 7)
// instead of single CTAs (5). H200, 2026-12-02, pairs against single CTAs (whole tiles where A outgrows L2, below),
// medians of 3 runs each: M = 1024 1.1-2.6 % faster on every shape (128-896 tiles), 4.5 % on 28672 x 8192; M = 256
// 0.7-2.2 % faster on 4096 x 11008, 8192 x 28672, 28672 x 8192 (64-224 tiles), even on 8192 x 8192 (64), but 3.8 % /
// 5.9 % slower on 11008 x 4096 / 4096 x 4096 (32 tiles, each cut into 4 parts: short ranges, where a pair's start
// and end handshakes and half as many independently scheduled units cost more than the halved A reads gain).
#ifndef QH_WGMMA_PAIRS_MIN_TILES
#define QH_WGMMA_PAIRS_MIN_TILES 64
#endif
// The smallest A (MiB) for which a plan with more tiles than resident blocks gives each block whole tiles (data
// parallel, a few SMs idle) instead of stream-K ranges: stream-K starts the blocks at k offsets spread over all of
// k, so together they sweep all of A at once, where whole tiles keep them at the same k, on a narrow band of A.
// H200, 2026-12-02, M = 1024 on 28672 x 8192 (A 56 MiB, L2 50 MB), in CTA pairs: 756.3 -> 707.3 us (per-channel
// 694.2 -> 650.9), DRAM reads 2.03 GB -> 239 MB per call (ncu; the weights and A are 176 MB), L2 hit rate 30 -> 82 %.
#ifndef QH_WHOLE_TILES_MIN_A_MIB
#define QH_WHOLE_TILES_MIN_A_MIB 32
#endif

// The largest m given the narrow tile (m <= 8, the transposed product; Tile); 0: none, m <= 16 takes the 16-row
// tile. H200, 2026-12-02, M = 1 against the 16-row tile: 2-13 % faster on every shape (fp16 and bf16, group 128 and
// per-channel; 28672 x 8192 56.4 -> 51.4 us). 4 stages (its smaller A leaves room for them at two blocks per SM,
// which the 16-row tile lacks by 1 KB) timed within 2 % of 3 either way (per-channel 8192 x 28672 5 % slower), so it
// keeps the 16-row tile's 3 and a third less shared memory.
#ifndef QH_NARROW_MAX_M
#define QH_NARROW_MAX_M 8
#endif
static_assert(QH_NARROW_MAX_M >= 0 && QH_NARROW_MAX_M <= 8, "the narrow tile has 8 rows");
// On CC 9.0 the narrow tile is 8 x 256 with 128-input stages (configuration 12: B in 2 KB runs per 16-row tile
// instead of 1 KB, the same 16 words per thread and stage) where the shape has at least this many of its units per
// SM, else 8 x 128 (10). H200, 2026-12-02, M = 1, one call, against 8 x 128: 8192 x 28672 and 28672 x 8192 (54 units
// per SM) 7.5-9 % faster with group 128, 5-8.5 % per-channel; 8192 x 8192 (15.5) 1-3 % slower, 4096 x 11008 and
// 11008 x 4096 (10.4) 2-7 % slower. Timed again after the benchmarks' L2 flush became a read (2026-12-03, two calls,
// perf/marlin_notes.md): 8192 x 8192 5-7 % faster on 8 x 256 (fp16 / bf16, group 128 / per-channel; 20.1 -> 19.1
// us), 4096 x 11008 4 % faster and 11008 x 4096 3 % slower, so the threshold sits between 10.4 and 15.5. (The
// 16-row tile spills at 256 columns.)
#ifndef QH_NARROW_WIDE_MIN_UNITS_PER_SM
#define QH_NARROW_WIDE_MIN_UNITS_PER_SM 12
#endif

// How much less (percent) stream-K must load the busiest SM for the plan to take it over tiles cut alike.
#ifndef QH_STREAMK_MIN_GAIN_PCT
#define QH_STREAMK_MIN_GAIN_PCT 10
#endif

// The largest m given the TMA-fed m <= 16 / m <= 32 tiles on CC 9.0 (configurations 8, 9) instead of the cp.async
// ones (0, 1); 0 keeps every m on cp.async.
#ifndef QH_TMA_SMALL_MAX_M
#define QH_TMA_SMALL_MAX_M 32
#endif

// Each row is one compiled kernel per dtype (dispatch lists the indices).
constexpr MarlinGemmConfig kConfigs[] = {
    {1, QH_SMALL_NC, QH_SMALL_BK, QH_SMALL_STAGES, QH_SMALL_MIN_UNITS},  // m <= 16: 16 x 128, 256 inputs per stage
    {2, QH_SMALL_NC, QH_SMALL_BK, QH_SMALL_STAGES, QH_SMALL_MIN_UNITS},  // m <= 32
    {4, 4, QH_BIG_BK, QH_BIG_STAGES, QH_BIG_MIN_UNITS},  // larger m: 64 x 256 tiles, 2 warps split K per chunk
    {4, 4, 64, QH_WGMMA_STAGES, QH_WGMMA_MIN_UNITS, 90, 1, true},  // m <= 64 on CC 9.0, large shapes: 64 x 256
    {8, 4, 64, QH_WGMMA_STAGES, QH_WGMMA_MIN_UNITS, 90, 1, true},  // m <= 128 on CC 9.0: 128 x 256 tiles
    {16, 2, 64, QH_WGMMA_STAGES, QH_WGMMA_MIN_UNITS, 90, 1, true},  // larger m on CC 9.0: 256 x 128 tiles
    {4, 2, 64, QH_WGMMA_STAGES, QH_WGMMA_MIN_UNITS, 90, 1, true},  // m <= 64 on CC 9.0, small shapes: 64 x 128
    {16, 2, 64, QH_WGMMA_STAGES, QH_WGMMA_MIN_UNITS, 90, 2, true},  // configuration 5 in CTA pairs sharing A
    {1, QH_SMALL_NC, QH_SMALL_BK, QH_SMALL_STAGES, QH_SMALL_MIN_UNITS, 90},  // configuration 0 fed by TMA
    {2, QH_SMALL_NC, QH_SMALL_BK, QH_SMALL_STAGES, QH_SMALL_MIN_UNITS, 90},  // configuration 1 fed by TMA
    {1, QH_SMALL_NC, QH_SMALL_BK, QH_SMALL_STAGES, QH_SMALL_MIN_UNITS, 90, 1, false, true},  // m <= 8: 8 x 128, TMA
    {1, QH_SMALL_NC, QH_SMALL_BK, QH_SMALL_STAGES, QH_SMALL_MIN_UNITS, 80, 1, false, true},  // the same, cp.async
    {1, 4, 128, QH_SMALL_STAGES, QH_SMALL_MIN_UNITS, 90, 1, false, true},  // m <= 8 on CC 9.0, large shapes: 8 x 256
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

__device__ __forceinline__ void cp_async16(void* smem, const void* global, bool valid) {
  // src-size 0 reads nothing and fills the 16 bytes with zeros (rows past m, inputs past k): `global` may then point
  // past the tensor, as it is not read (no select of a safe address per piece: 12 instructions a stage).
  const unsigned dst = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x2(std::uint32_t (&r)[2], const void* smem) {
  const unsigned addr = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* smem) {
  const unsigned addr = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// f(std::integral_constant<int, v>()) for a v in [0, N) known only at run time: one copy of f per value, in which v is
// a constant.
template <typename F, int... I>
__device__ __forceinline__ void with_constant_of(int v, F& f, std::integer_sequence<int, I...>) {
  ((v == I ? f(std::integral_constant<int, I>()) : void()), ...);
}
template <int N, typename F>
__device__ __forceinline__ void with_constant(int v, F&& f) {
  with_constant_of(v, f, std::make_integer_sequence<int, N>());
}

// NARROW: the 8-row tile of m <= 8 (MT 1), which computes the transposed product C^T = W^T A^T: per 16 x 16 weight
// tile, the dequantized word is the m16n8k16 A operand (the 16 columns as its rows: the thread's B fragments of the
// tile's halves 0 and 1 hold the elements of A-operand rows t / 4 and t / 4 + 8, so the registers only change
// order), and the 8 rows of A are the n8 B operand (ldmatrix of 8 rows x 16 inputs, not transposed). One product
// per word instead of two and half the accumulators, where the 16-row tile spends 15 of its 16 rows on zeros at
// M = 1; a stage's A is half as large.
template <int MT, int NC, int BK, int STAGES, bool NARROW>
struct Tile {
  static_assert(!NARROW || MT == 1, "the narrow tile has 8 rows");
  static constexpr bool kNarrow = NARROW;
  static constexpr int kMt = MT, kBm = NARROW ? 8 : 16 * MT, kNc = NC, kBn = 64 * NC, kBk = BK, kStages = STAGES;
  static constexpr int kKt = BK / 16;            // 16-row tiles per stage
  static constexpr int kKg = kWarps / NC;        // warps sharing a 64-column chunk (they split the stage's tiles)
  static constexpr int kPerWarp = kKt / kKg;
  static_assert(kWarps % NC == 0 && kPerWarp * kKg == kKt, "warps must split a stage's tiles evenly");
  // 16-byte pieces per stage. A is stored as BK / 64 boxes of kBm rows x 64 inputs, piece c of row r of a box at
  // c ^ (r % 8) (the TMA's 128-byte swizzle): ldmatrix's 8 rows then hit 8 different banks.
  static constexpr int kA = kBm * BK / 8;
  static constexpr int kB = kKt * NC * 32;
  static constexpr int kS = (BK / 32) * NC * 8;  // up to BK / 32 scale rows (group size 32)
  static constexpr int kStage = kA + kB + kS;
  static constexpr int kChannel = NC * 8;        // per-channel scales, loaded once
  static constexpr int kRow = kBn + 4;           // float row stride of the reduction buffer (spreads banks)
  static constexpr int kReduceBytes = kBm * kRow * 4;
  static constexpr int kPipelineBytes = (STAGES * kStage + kChannel) * 16;
  // The reduction buffer has its own space: the pipeline keeps loading the next tile's stages while a tile ends.
  static constexpr int kSmemBytes = kPipelineBytes + kReduceBytes;
  static_assert(BK % 64 == 0, "whole A boxes");
};

// Blocks per SM of a TMA-fed tile: two where their shared memory fits in half of the SM's 228 KB (less the 1 KB per
// block the driver keeps), as the cp.async tiles run, the consumers then at 104 registers (RegisterSplit; with one
// producer warp instead of a warpgroup, 9 warps per block, five of the 18 share a quarter of the register file:
// 96, at which ptxas spilled); else one (the 32-row tile, by its shared memory).
template <typename G>
__host__ __device__ constexpr int tma_blocks_per_sm() {
  return 1024 + G::kSmemBytes <= 113 * 1024 ? 2 : 1;
}

// Grouped: scales per group (p.group_size > 0) rather than one row per channel; a template parameter, so the loop
// carries no branch between the two scale sources. Tma (sm_90a): the stages are filled by a producer warp
// (produce_stages, A through a_map) and handed over by mbarriers, where the cp.async pipeline has every thread copy
// pieces and the block meet at a barrier per stage.
template <typename T, typename G, bool Grouped, bool Tma>
__device__ __forceinline__ void marlin_gemm_body(const Params& p, const CUtensorMap* a_map) {
  constexpr int MT = G::kMt, NC = G::kNc, BK = G::kBk, kStages = G::kStages;
  constexpr bool kNarrow = G::kNarrow;
  using Pair = typename Elem<T>::Pair;
  extern __shared__ uint4 dynamic_smem[];
  uint4* const smem = Tma ? dynamic_smem + (1024 - smem_address(dynamic_smem) % 1024) % 1024 / 16 : dynamic_smem;
  // A barrier over the threads that compute (fed by TMA the producer warp has left).
  auto sync_block = [] {
    if constexpr (Tma) {
      sync_consumers();
    } else {
      __syncthreads();
    }
  };
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  // Fed by TMA, per stage buffer: its data landed (the producer's arrival and the copies' bytes); its data consumed
  // (every consumer thread arrives: one arrival per warp after a __syncwarp was slower in the wgmma kernel and leaves
  // racecheck unable to order the warp's reads before the refill). The producer warpgroup leaves here, before the
  // consumers' set-up, which runs at their raised register count.
  __shared__ std::uint64_t full[Tma ? kStages : 1], empty[Tma ? kStages : 1];
  if constexpr (Tma) {
    if (!start_fed_block<G, Grouped, 1, 32, tma_blocks_per_sm<G>()>(p, a_map, smem, full, empty)) {
      return;
    }
  }
  const int chunk = warp % G::kNc, kg = warp / G::kNc;
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
  const int a_r = tid / (G::kBk / 8), a_c = tid % (G::kBk / 8);
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
      cp_async16(sa + (a_c / 8) * (G::kBm * 8) + r * 8 + ((a_c % 8) ^ (r % 8)), a_src, ok);  // the boxed layout
    }
    const uint4* b_src = b_tile + at.stage * b_stage_step;
#pragma unroll
    for (int j = 0; j < kBPer; ++j, b_src += b_step) {
      const bool ok = b_ok && (full || at.stage * G::kKt + j * kBRows + b_t < p.k_tiles);
      cp_async16(sb + tid + j * kThreads, b_src, ok);
    }
    if (s_ok) {
      const int g = (k0 >> p.group_shift) + s_r;
      const bool ok = g < p.groups;
      cp_async16(ss + tid, s_tile + std::int64_t(g) * scale_row, ok);
    }
  };

  // Per-channel: the tile's one scale row, rearranged into the grouped order the loop reads.
  auto load_channel_scales = [&](int n0) {
    T* const dst = reinterpret_cast<T*>(channel);
    for (int i = tid; i < G::kBn; i += kThreads) {
      const int c = i / 64, q = i % 64;
      dst[i] = channel_scale<T>(p, n0 + 64 * c + q / 8 + 8 * (q % 8));  // grouped order: entry 8i + j is column i + 8j
    }
  };

  // Where this thread reads in a stage, fixed for the kernel (the loop adds only the buffer's base): its B piece of
  // tile t = kg + j kKg, that tile's scale piece (grouped) and its A piece for ldmatrix (row 16 mt + lane % 16, piece
  // 2 t + lane / 16: in box 2 t / 8, swizzled; narrow, the x2 form: row lane % 8, piece 2 t + lane / 8 % 2), where
  // the loop had recomputed them for every tile. With warps kKg = 4 (or 8) tiles apart, tile j's A piece is tile 0's
  // plus whole boxes (kg < kKg: the swizzle does not change with j), an immediate of the ldmatrix: three registers
  // fewer (the TMA-fed tile's consumers have 104).
  const int b_piece = G::kA + kg * NC * 32 + chunk * 32 + lane;
  auto a_piece_at = [&](int t) {
    const int row = kNarrow ? lane % 8 : lane % 16, half = kNarrow ? lane / 8 % 2 : lane / 16;
    return (t / 4) * (G::kBm * 8) + row * 8 + (((2 * t) % 8 + half) ^ (lane % 8));
  };
  constexpr bool kBoxStep = G::kKg % 4 == 0;
  int s_piece[G::kPerWarp], a_piece[kBoxStep ? 1 : G::kPerWarp];
#pragma unroll
  for (int j = 0; j < G::kPerWarp; ++j) {
    const int t = kg + j * G::kKg;
    const int srow = !Grouped || BK <= p.group_size ? 0 : (16 * t) >> p.group_shift;
    s_piece[j] = G::kA + G::kB + srow * NC * 8 + chunk * 8 + lane / 4;
    if (!kBoxStep || j == 0) a_piece[kBoxStep ? 0 : j] = a_piece_at(t);
  }
  auto a_piece_of = [&](int j) {
    if constexpr (kBoxStep) {
      return a_piece[0] + j * (G::kKg / 4) * (G::kBm * 8);
    } else {
      return a_piece[j];
    }
  };

  // Per 16-row tile of A, the sums of the chunk's 8-column halves (the transposed product: of its 16-column tiles).
  constexpr int kSums = kNarrow ? 4 : 8;
  float acc[MT][kSums][4] = {};
  auto compute_stage = [&](const Cursor& at, int buf) {
    const uint4* const stage_base = smem + buf * G::kStage;
    if (at.n0 + 64 * chunk >= p.n_pad) return;
    const int tiles_left = p.k_tiles - at.stage * G::kKt;  // tiles at or past this are past k
#pragma unroll
    for (int j = 0; j < G::kPerWarp; ++j) {
      if (kg + j * G::kKg >= tiles_left) break;  // tiles are in increasing order
      const uint4 words = stage_base[b_piece + j * G::kKg * NC * 32];
      const uint4 scales = Grouped ? stage_base[s_piece[j]] : channel[chunk * 8 + lane / 4];
      std::uint32_t frag_a[MT][4], frag_b[2];  // A as the mma's A operand; narrow, as its B operand
      if constexpr (kNarrow) {
        ldmatrix_x2(frag_b, stage_base + a_piece_of(j));
      } else {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) ldmatrix_x4(frag_a[mt], stage_base + 16 * mt * 8 + a_piece_of(j));
      }
      const std::uint32_t word[4] = {words.x, words.y, words.z, words.w};
      const std::uint32_t scale_words[4] = {scales.x, scales.y, scales.z, scales.w};
#pragma unroll
      for (int tile = 0; tile < 4; ++tile) {  // 16x16 tile `tile` of the chunk: 8-column halves 2 tile, 2 tile + 1
        const Pair both = bits_as<Pair>(scale_words[tile]);
        const Pair s0 = Pair{both.x, both.x}, s1 = Pair{both.y, both.y};
        std::uint32_t b[4];
        dequant_word<T>(word[tile], s0, s1, b);
        if constexpr (kNarrow) {
          const std::uint32_t weights[4] = {b[0], b[2], b[1], b[3]};  // rows t / 4, t / 4 + 8; inputs +0, +8
          Elem<T>::mma(acc[0][tile], weights, frag_b[0], frag_b[1]);
        } else {
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            Elem<T>::mma(acc[mt][2 * tile], frag_a[mt], b[0], b[1]);
            Elem<T>::mma(acc[mt][2 * tile + 1], frag_a[mt], b[2], b[3]);
          }
        }
      }
    }
  };

  // The end of this block's part of tile t: the warps of a chunk hold partial sums over different 16-row tiles; add
  // them in shared memory in warp order. A tile done by one block is written out; otherwise the part goes to its
  // workspace slot (block + tile: unique, as both only grow along the ranges) and the last block of the tile to
  // arrive adds all parts in block order (deterministic: the same order whichever arrives last), adds the bias,
  // rounds once and writes the output. Fed by TMA, the consumers first meet: some may still be writing out the last
  // tile from the reduction buffer (the cp.async loop's barrier per stage orders that).
  auto finish_tile = [&](const Cursor& at) {
    if constexpr (Tma) sync_block();
    for (int g = 0; g < G::kKg; ++g) {
      if (kg == g) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
          for (int h = 0; h < kSums; ++h) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              // The mma's output element e: row lane / 4 (+ 8 for e >= 2), column 2 (lane % 4) + e % 2; in the
              // transposed product its rows are the tile's columns and its columns A's rows.
              const int across = lane / 4 + (e >= 2 ? 8 : 0), down = 2 * (lane % 4) + e % 2;
              const int row = kNarrow ? down : 16 * mt + across;
              const int col = 64 * chunk + (kNarrow ? 16 * h + across : 8 * h + down);
              float& out = red[row * G::kRow + col];
              out = g == 0 ? acc[mt][h][e] : out + acc[mt][h][e];
              acc[mt][h][e] = 0.f;
            }
          }
        }
      }
      sync_block();
    }
    const std::int64_t t = at.t;
    const TileParts tile = tile_parts_of(p, t, p.units, gridDim.x);
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
      write_output<T>(p, row, col, v.x);
      write_output<T>(p, row, col + 1, v.y);
      write_output<T>(p, row, col + 2, v.z);
      write_output<T>(p, row, col + 3, v.w);
    };
    if (tile.parts == 1) {
      for (int q = tid; q < kQuads; q += kThreads) store_quad(q, red_quad(q));
      return;
    }
    float4* const workspace = reinterpret_cast<float4*>(p.workspace);
    for (int q = tid; q < kQuads; q += kThreads) workspace[(block + t) * kQuads + q] = red_quad(q);
    if (!last_to_arrive(p, t, tile.parts, sync_block)) return;
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

  const std::int64_t count = u_end - u_begin;
  Cursor computing = cursor_at(u_begin, p, G::kBm, G::kBn);
  if constexpr (Tma) {
    int buf = 0;
    unsigned phase = 0;
    for (std::int64_t i = 0; i < count; ++i) {
      if (!Grouped && (i == 0 || computing.stage == 0)) {  // a new tile: its per-channel scales, once all are done
        sync_block();                                      // with the last tile's
        load_channel_scales(computing.n0);
        sync_block();
      }
      with_constant<kStages>(buf, [&](auto buffer) {  // the buffer a constant, as in the cp.async loop below
        constexpr int b = decltype(buffer)::value;
        mbarrier_wait(&full[b], phase);
        compute_stage(computing, b);
        mbarrier_arrive(&empty[b]);
      });
      if (++buf == kStages) {
        buf = 0;
        phase ^= 1u;
      }
      if (i + 1 == count || computing.stage + 1 == p.stages) finish_tile(computing);
      advance(computing, p, G::kBm, G::kBn);
    }
  } else {
    // Two cursors over this block's units: the one being loaded runs kAhead stages ahead of the one being computed
    // (it refills the buffer computed in the previous iteration).
    constexpr int kAhead = kStages - 1;
    static_assert(kAhead >= 1, "at least one stage in flight");
    Cursor loading = computing;
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
    // One iteration with its buffer a constant (a copy of the body per buffer, chosen by with_constant): every
    // shared-memory address in it is then a per-thread register plus an immediate. The buffer refilled is the one
    // computed in the previous iteration.
    auto iteration = [&](std::int64_t i, auto buffer) {
      constexpr int buf = decltype(buffer)::value, load_buf = (buf + kAhead) % kStages;
      cp_async_wait<kAhead - 1>();
      __syncthreads();  // stage data visible to all; every warp is done with the buffer refilled next
      if (i + kAhead < count) load_next(load_buf);
      cp_async_commit();
      if (!Grouped && (i == 0 || computing.stage == 0)) {  // a new tile: its per-channel scales
        load_channel_scales(computing.n0);
        __syncthreads();
      }
      compute_stage(computing, buf);
    };
    int buf = 0;
    for (std::int64_t i = 0; i < count; ++i) {
      with_constant<kStages>(buf, [&](auto buffer) { iteration(i, buffer); });
      buf = buf + 1 == kStages ? 0 : buf + 1;
      if (i + 1 == count || computing.stage + 1 == p.stages) {
        finish_tile(computing);
      }
      advance(computing, p, G::kBm, G::kBn);
    }
    cp_async_wait<0>();
  }
}

template <typename T, typename G, bool Grouped>
__global__ void __launch_bounds__(kThreads) marlin_gemm_kernel(Params p) {
  marlin_gemm_body<T, G, Grouped, false>(p, nullptr);
}

// The same tiles fed by TMA (sm_90a; a trap elsewhere, where the host never launches it).
template <typename T, typename G, bool Grouped>
__global__ void __launch_bounds__(kFedThreads, tma_blocks_per_sm<G>())
    marlin_gemm_tma_kernel(const __grid_constant__ TmaParams tp) {
#if QH_SM90A
  marlin_gemm_body<T, G, Grouped, true>(tp.p, &tp.a_map);
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

// The mma.sync block tile of a configuration.
template <int Config>
using TileOf = Tile<kConfigs[Config].m_tiles, kConfigs[Config].n_chunks, kConfigs[Config].bk, kConfigs[Config].stages,
                    kConfigs[Config].narrow>;

template <typename T, int Config, bool Grouped>
auto* kernel_of() {
  constexpr MarlinGemmConfig c = kConfigs[Config];
  static_assert(!c.narrow || !c.wgmma, "the narrow tile: mma.sync");
  static_assert(c.arch == 90 || (!c.wgmma && c.cluster == 1), "wgmma and clusters: CC 9.0 only");
  if constexpr (c.wgmma) {
    static_assert(c.bk == 64, "the wgmma tiles: 64 inputs per stage");
    return marlin::marlin_gemm_wgmma_kernel<T, c.m_tiles, c.n_chunks, c.stages, Grouped, c.cluster>;
  } else if constexpr (c.arch == 90) {
    static_assert(c.cluster == 1, "the TMA-fed mma.sync tiles: single CTAs");
    return marlin_gemm_tma_kernel<T, TileOf<Config>, Grouped>;
  } else {
    return marlin_gemm_kernel<T, TileOf<Config>, Grouped>;
  }
}

constexpr int threads_of(const MarlinGemmConfig& c) {
  return c.arch == 90 ? kFedThreads : kThreads;
}

template <typename T, int Config>
int smem_bytes_of() {
  constexpr MarlinGemmConfig c = kConfigs[Config];
  if constexpr (c.wgmma) {
    return marlin::WgmmaTile<c.m_tiles, c.n_chunks, c.stages>::kSmemBytes;
  } else if constexpr (c.arch == 90) {  // fed by TMA: the base rounded up to 1024 bytes (the swizzled boxes)
    return 1024 + TileOf<Config>::kSmemBytes;
  } else {
    return TileOf<Config>::kSmemBytes;
  }
}

// Per kernel and device, what the host asks the driver once: the dynamic shared-memory limit raised (needed above
// 48 KB) and the resident blocks per SM. Asking on every call put two driver calls before each launch.
struct KernelSetup {
  cudaError_t error = cudaErrorNotReady;  // cudaErrorNotReady: not asked yet on this device
  int blocks_per_sm = 1;
  int max_clusters = 0;  // a clustered configuration: clusters resident at once on the device
};

// The launch configuration of a clustered kernel: clusters of `cluster` CTAs along x.
struct ClusterLaunch {
  cudaLaunchAttribute attribute{};
  cudaLaunchConfig_t config{};
  ClusterLaunch(int cluster, unsigned blocks, int threads, int smem, cudaStream_t stream) {
    attribute.id = cudaLaunchAttributeClusterDimension;
    attribute.val.clusterDim.x = unsigned(cluster);
    attribute.val.clusterDim.y = attribute.val.clusterDim.z = 1;
    config.gridDim = dim3(blocks);
    config.blockDim = dim3(unsigned(threads));
    config.dynamicSmemBytes = std::size_t(smem);
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
  }
  ClusterLaunch(const ClusterLaunch&) = delete;  // config points at attribute
  ClusterLaunch& operator=(const ClusterLaunch&) = delete;
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
      setup->error = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&setup->blocks_per_sm, kernel,
                                                                   threads_of(kConfigs[Config]), smem);
    }
    constexpr int kCluster = kConfigs[Config].cluster;
    if (setup->error == cudaSuccess && kCluster > 1) {
      const ClusterLaunch launch(kCluster, kCluster, threads_of(kConfigs[Config]), smem, nullptr);
      setup->error = cudaOccupancyMaxActiveClusters(&setup->max_clusters, kernel, &launch.config);
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
    case 5: return with_kernel<T, 5, Grouped>(f);
    case 6: return with_kernel<T, 6, Grouped>(f);
    case 7: return with_kernel<T, 7, Grouped>(f);
    case 8: return with_kernel<T, 8, Grouped>(f);
    case 9: return with_kernel<T, 9, Grouped>(f);
    case 10: return with_kernel<T, 10, Grouped>(f);
    case 11: return with_kernel<T, 11, Grouped>(f);
    case 12: return with_kernel<T, 12, Grouped>(f);
    default: return cudaErrorInvalidValue;
  }
}

template <typename F>
cudaError_t dispatch(DType dtype, int config, bool grouped, F&& f) {
  if (dtype == DType::F16) return grouped ? dispatch<__half, true>(config, f) : dispatch<__half, false>(config, f);
  return grouped ? dispatch<__nv_bfloat16, true>(config, f) : dispatch<__nv_bfloat16, false>(config, f);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// The driver's cuTensorMapEncodeTiled through the runtime (the library does not link libcuda); null without it.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encoder = [] {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &entry, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return PFN_cuTensorMapEncodeTiled_v12000{};
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(entry);
  }();
  return encoder;
}

// A ([m, k] 16-bit, rows k elements apart) for the Hopper kernels' TMA: boxes of 64 inputs x box_rows rows in the
// 128-byte swizzle that the wgmma descriptor and the mma.sync tiles' ldmatrix read, elements outside the matrix
// read as zero (FLOAT_OOB_FILL_NONE).
cudaError_t encode_a_map(CUtensorMap* map, const void* a, std::int64_t m, std::int64_t k, int box_rows) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (encode == nullptr) return cudaErrorNotSupported;
  const cuuint64_t dims[2] = {cuuint64_t(k), cuuint64_t(m)};
  const cuuint64_t row_bytes[1] = {cuuint64_t(k) * 2};  // a multiple of 16: the launcher requires k % 8 == 0
  const cuuint32_t box[2] = {64, cuuint32_t(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 2, const_cast<void*>(a), dims, row_bytes, box,
                            element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

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

// The most units one SM gets when `blocks` ranges of `units` (differing by one unit at most) fill the SMs in turn.
std::int64_t busiest_sm_units(std::int64_t blocks, std::int64_t units, int sm_count) {
  return (blocks + sm_count - 1) / sm_count * ((units + blocks - 1) / blocks);
}
}  // namespace

bool marlin_gemm_config_fits(int config, std::int64_t n) {
  return config >= 0 && config < kConfigCount && column_tiles(config, n) % kConfigs[config].cluster == 0;
}

std::int64_t marlin_gemm_tiles(int config, std::int64_t m, std::int64_t n) {
  const int bm = marlin_gemm_config(config).rows();
  return column_tiles(config, n) * ((m + bm - 1) / bm);
}

std::int64_t marlin_gemm_max_blocks(int config, std::int64_t m, std::int64_t n, std::int64_t k) {
  const std::int64_t tiles = marlin_gemm_tiles(config, m, n);
  return std::min(tiles * marlin_gemm_stages(config, k), kMaxBlocksPerTile * tiles);
}

std::int64_t marlin_gemm_workspace_floats(int config, int blocks, std::int64_t m, std::int64_t n) {
  const MarlinGemmConfig c = marlin_gemm_config(config);
  return (blocks + marlin_gemm_tiles(config, m, n)) * c.rows() * 64 * c.n_chunks;
}

MarlinGemmPlan marlin_gemm_plan(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype, int sm_count,
                                int arch) {
  MarlinGemmPlan plan;
  if (m <= 32) {
    const bool tma = arch == 90 && m <= QH_TMA_SMALL_MAX_M;
    if (m > QH_NARROW_MAX_M) {
      plan.config = (m <= 16 ? 0 : 1) + (tma ? 8 : 0);
    } else if (!tma) {
      plan.config = 11;
    } else {  // the narrow tile at 256 columns where the shape has the units for it
      const std::int64_t wide_units = marlin_gemm_tiles(12, m, n) * marlin_gemm_stages(12, k);
      plan.config = wide_units >= std::int64_t(QH_NARROW_WIDE_MIN_UNITS_PER_SM) * sm_count ? 12 : 10;
    }
  } else if (arch != 90 || m < QH_WGMMA_MIN_M) {
    plan.config = 2;
  } else {
    const bool short_tile =
        m <= 64 && marlin_gemm_tiles(3, m, n) * marlin_gemm_stages(3, k) < QH_WGMMA_SHORT_MAX_UNITS_PER_SM * sm_count;
    const bool pairs = marlin_gemm_tiles(5, m, n) >= QH_WGMMA_PAIRS_MIN_TILES && marlin_gemm_config_fits(7, n);
    plan.config = short_tile ? 6 : m <= 64 ? 3 : m < QH_WGMMA_TALL_MIN_M ? 4 : pairs ? 7 : 5;
  }
  // As many blocks as fit on the GPU at once (at most kBlocksPerSm per SM), so the one wave is the whole grid.
  int per_sm = 1, max_clusters = 0;
  // The grouped kernel's occupancy: the per-channel one has the same shared memory and no more registers.
  if (dispatch(dtype, plan.config, /*grouped=*/true, [&](auto*, int, const KernelSetup& setup) {
        per_sm = setup.blocks_per_sm;
        max_clusters = setup.max_clusters;
        return cudaSuccess;
      }) != cudaSuccess || per_sm < 1) {
    cudaGetLastError();  // clear it: the launch reports real errors
    per_sm = 1;
  }
  // The rest counts clusters (of one block but in configuration 7): a walk's ranges and tiles (cursor_at).
  const int cluster = kConfigs[plan.config].cluster;
  std::int64_t resident = std::int64_t(sm_count) * std::min(per_sm, kBlocksPerSm);
  if (max_clusters > 0) resident = std::min<std::int64_t>(resident, std::int64_t(max_clusters) * cluster);
  resident = std::max<std::int64_t>(1, resident / cluster);  // one cluster at least (a GPU of one SM)
  const std::int64_t tiles = marlin_gemm_tiles(plan.config, m, n) / cluster;
  const std::int64_t stages = marlin_gemm_stages(plan.config, k), min_units = kConfigs[plan.config].min_units;
  // When at least two blocks per tile fit, cut every tile into the same number of parts (the ranges then start on
  // tile boundaries: H200, M = 64 on 8192 x 8192, 128 such blocks took 70 us where 132 straddling ones took 87);
  // with more tiles than resident blocks and an A larger than L2, whole tiles per block (QH_WHOLE_TILES_MIN_A_MIB);
  // otherwise stream-K over the resident blocks.
  const std::int64_t parts = std::min({resident / tiles, stages / min_units, kMaxBlocksPerTile});
  const std::int64_t a_bytes = m * k * 2;
  const bool whole_tiles = tiles >= resident && a_bytes >= (std::int64_t(QH_WHOLE_TILES_MIN_A_MIB) << 20);
  // Tiles cut alike may still leave some SMs one block where the rest have two, and at m <= 16 two blocks share an
  // SM's issue slots, so the time is that of the SMs with two: stream-K instead where it loads the busiest SM at
  // least QH_STREAMK_MIN_GAIN_PCT % less (H200, 8192 x 28672 at M = 1: 112 tiles in two parts made 224 blocks, 92
  // SMs with 64 units and 40 with 32; stream-K over 264 gives every SM 54-56).
  const std::int64_t per_block = (tiles + resident - 1) / resident, units = tiles * stages;
  const std::int64_t streamed = std::min(resident, units / min_units);
  const bool alike = parts >= 2 && (cluster > 1 || busiest_sm_units(tiles * parts, units, sm_count) * 100 <
                                                      busiest_sm_units(streamed, units, sm_count) *
                                                          (100 + QH_STREAMK_MIN_GAIN_PCT));
  const std::int64_t wanted = alike         ? tiles * parts
                              : whole_tiles ? (tiles + per_block - 1) / per_block
                                            : streamed;
  const std::int64_t most = marlin_gemm_max_blocks(plan.config, m, n, k) / cluster;
  plan.blocks = cluster * int(std::max<std::int64_t>(1, std::min(wanted, most)));
  return plan;
}

cudaError_t launch_marlin_gemm(const MarlinGemmArgs& args, cudaStream_t stream) {
  const MarlinGemmPlan& plan = args.plan;
  const bool group_ok = args.group_size == -1 || args.group_size == 32 || args.group_size == 64 ||
                        args.group_size == 128;
  if (args.m <= 0 || args.k <= 0 || args.n <= 0 || args.k % 8 != 0 || args.n_pad % 64 != 0 || args.n > args.n_pad ||
      args.k_pad % 16 != 0 || args.k > args.k_pad || !group_ok || plan.config < 0 || plan.config >= kConfigCount ||
      plan.blocks < 1 || plan.blocks > marlin_gemm_max_blocks(plan.config, args.m, args.n, args.k) ||
      plan.blocks % kConfigs[plan.config].cluster != 0 || !marlin_gemm_config_fits(plan.config, args.n) ||
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
    if constexpr (std::is_same_v<decltype(kernel), void (*)(TmaParams)>) {
      TmaParams tp{};
      tp.p = p;
      const int cluster = kConfigs[plan.config].cluster, threads = threads_of(kConfigs[plan.config]);
      const int box_rows = kConfigs[plan.config].rows() / cluster;  // each CTA of a cluster loads its share
      if (const cudaError_t e = encode_a_map(&tp.a_map, args.a, args.m, args.k, box_rows); e != cudaSuccess) return e;
      if (cluster > 1) {
        const ClusterLaunch launch(cluster, unsigned(plan.blocks), threads, smem, stream);
        if (const cudaError_t e = cudaLaunchKernelEx(&launch.config, kernel, tp); e != cudaSuccess) return e;
      } else {
        kernel<<<unsigned(plan.blocks), threads, smem, stream>>>(tp);
      }
    } else {
      kernel<<<unsigned(plan.blocks), kThreads, smem, stream>>>(p);
    }
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
