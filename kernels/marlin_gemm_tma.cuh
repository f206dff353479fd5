// The Hopper feed of the Marlin GEMM's stages (sm_90a; included by marlin_gemm.cu and marlin_gemm_wgmma.cuh): a
// producer (a thread or a warp) fills each block's shared-memory stages through the Tensor Memory Accelerator (A)
// and bulk copies (the weights and grouped scales), and mbarriers tell the consumers when a stage has landed and the
// producer when it is free again, so the consumer warps never meet at a block-wide barrier (the warp-specialized
// pipeline of CUTLASS's sm90 kernels, a design fact used here, not its code). It feeds the wgmma tiles and the
// small-m mma.sync tiles on CC 9.0. Facts used from the PTX ISA: the mbarrier, cp.async.bulk, cp.async.bulk.tensor
// and setmaxnreg instructions and the 128-byte swizzle of a tensor map.
#pragma once

#include <cuda.h>  // CUtensorMap (a type only: the host encodes it through the runtime's driver entry point)

#include "kernels/marlin_gemm_common.cuh"

// The instructions below exist in sm_90a machine code only; other targets compile them to nothing and the kernels
// that use them to a trap (the host never launches those there).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define QH_SM90A 1
#else
#define QH_SM90A 0
#endif

namespace qh::kernels::marlin {

__device__ __forceinline__ unsigned smem_address(const void* p) { return unsigned(__cvta_generic_to_shared(p)); }

// mbarriers in shared memory (PTX ISA "Parallel Synchronization and Communication Instructions: mbarrier"). A phase
// completes when its expected arrivals have arrived and, for a transaction barrier, its expected bytes have landed;
// waiting on parity P returns once the phase of that parity has completed.
__device__ __forceinline__ void mbarrier_init(std::uint64_t* bar, unsigned arrivals) {
#if QH_SM90A
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_address(bar)), "r"(arrivals) : "memory");
#endif
}
// The initialized barriers, visible to the async proxy (the copies' completions) as well.
__device__ __forceinline__ void mbarrier_init_fence() {
#if QH_SM90A
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void mbarrier_arrive(std::uint64_t* bar) {
#if QH_SM90A
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(smem_address(bar)) : "memory");
#endif
}
// The producer's arrival, announcing the bytes its copies will bring in this phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(std::uint64_t* bar, unsigned bytes) {
#if QH_SM90A
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_address(bar)),
               "r"(bytes)
               : "memory");
#endif
}
// The same arrival on the barrier at bar's offset in CTA `rank` of the cluster (this one's or a peer's). Release at
// CTA scope, as CUTLASS's ClusterBarrier arrives on a peer (a fact used): what it orders are reads of this CTA's own
// shared memory, complete (their values consumed) before the arrival; a cluster-scope release costs a MEMBAR.ALL.GPU
// per arrival in the SASS, and the waits' cluster-scope acquire an L1 invalidation per poll.
__device__ __forceinline__ void mbarrier_arrive_cluster(std::uint64_t* bar, unsigned rank) {
#if QH_SM90A
  asm volatile(
      "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.release.cta.shared::cluster.b64 _, [remote];\n}\n" ::"r"(smem_address(bar)),
      "r"(rank)
      : "memory");
#endif
}
__device__ __forceinline__ void mbarrier_wait(std::uint64_t* bar, unsigned parity) {
#if QH_SM90A
  unsigned done = 0;
  while (!done) {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.acquire.cta.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_address(bar)), "r"(parity)
        : "memory");
  }
#endif
}
// Every thread of the cluster: the barriers initialized in each CTA are visible to the others before any copy or
// arrival reaches them.
__device__ __forceinline__ void cluster_sync() {
#if QH_SM90A
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}

// A box of a 2-D tensor (the tensor map's box, at element coordinates x along the rows, y down them) into shared
// memory by the Tensor Memory Accelerator, completing `bytes` on `bar`; elements outside the tensor read as zero.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int x, int y, std::uint64_t* bar) {
#if QH_SM90A
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          smem_address(dst)),
      "l"(map), "r"(x), "r"(y), "r"(smem_address(bar))
      : "memory");
#endif
}
// The same box into shared memory at dst's offset in every CTA of the cluster in `ctas` (a bit per rank), completing
// its bytes on the barrier at bar's offset in each (TMA multicast: one read of L2 for all of them).
__device__ __forceinline__ void tma_load_2d_multicast(void* dst, const CUtensorMap* map, int x, int y,
                                                      std::uint64_t* bar, std::uint16_t ctas) {
#if QH_SM90A
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
      "%3}], [%4], %5;\n" ::"r"(smem_address(dst)),
      "l"(map), "r"(x), "r"(y), "r"(smem_address(bar)), "h"(ctas)
      : "memory");
#endif
}
// `bytes` (a multiple of 16) contiguous bytes into shared memory, completing on `bar`.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, unsigned bytes, std::uint64_t* bar) {
#if QH_SM90A
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   smem_address(dst)),
               "l"(src), "r"(bytes), "r"(smem_address(bar))
               : "memory");
#endif
}

// The blocks of both Hopper kernels: 8 consumer warps, threads 0 .. 255, then a producer warpgroup (its first warp
// issues the copies; a whole warpgroup, so that setmaxnreg can hand its registers to the consumers: 288 threads with
// one producer warp would cap every thread at 224, too few for the 128-row wgmma tile's 128 accumulators, and
// ptxas serialized its wgmmas, C7512).
constexpr int kConsumers = 256;
constexpr int kFedThreads = kConsumers + 128;

template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
#if QH_SM90A
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
#if QH_SM90A
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

// The registers per thread that setmaxnreg gives the producer warpgroup and the consumers of a block, BLOCKS per SM.
// One block: 128 x 40 + 256 x 232 of the SM's 65,536. Two: each launches at 80 (65,536 / 768, down to a multiple of
// 8) and keeps its 384 x 80: 128 x 24 + 256 x 104.
template <int BLOCKS>
struct RegisterSplit {
  static constexpr int kProducer = BLOCKS == 2 ? 24 : 40;
  static constexpr int kConsumer = BLOCKS == 2 ? 104 : 232;
};

// A barrier over the consumers alone (the producer has left): named barrier 1.
__device__ __forceinline__ void sync_consumers() {
  asm volatile("bar.sync 1, %0;\n" ::"n"(kConsumers) : "memory");
}

struct TmaParams {
  Params p;
  CUtensorMap a_map;  // A as a [m, k] 16-bit tensor, box 64 inputs x (kBm / cluster) rows, 128-byte swizzle
};

// A block's walk (cursor_at): with clusters of CLUSTER CTAs, cluster c = block / CLUSTER cuts the tiles / CLUSTER
// walk steps (each a row of CLUSTER adjacent column tiles) into ranges like a block of a plain grid, and its CTA of
// rank r takes column tile r of every step, so the CTAs of a cluster meet the same rows of A at the same stages.
// The cluster's CTAs are consecutive blocks (a 1-D grid of 1-D clusters).
template <int CLUSTER>
struct Walk {
  std::int64_t units, blocks, block;  // over walk steps: units, ranges (clusters), this CTA's range
  int rank;
  __device__ explicit Walk(const Params& p)
      : units(p.units / CLUSTER), blocks(gridDim.x / CLUSTER), block(blockIdx.x / CLUSTER),
        rank(int(blockIdx.x % CLUSTER)) {}
  __device__ std::int64_t begin() const { return range_start(block, units, blocks); }
  __device__ std::int64_t count() const { return range_start(block + 1, units, blocks) - begin(); }
};

// The producer (LANES threads of the producer warpgroup's first warp): per unit of this block's range, wait for the
// stage buffer to be empty, announce its bytes, and issue its copies: A by one TMA box per 64 inputs of the stage
// that holds any (rows past m and inputs past k read as zero), B by one bulk copy per 16-row tile that holds inputs
// (the tile's chunks are contiguous), grouped scales by one per scale row. Chunks past n_pad, tiles past k and A
// boxes wholly past k are not copied: the consumers do not read them. In a cluster, the CTA of rank r loads rows
// r kBm / CLUSTER .. of each A box into every CTA's stage (multicast), so each waits for every CTA's consumers to
// release the buffer (the empty barrier counts them all) and each stage's full barrier expects the whole box.
// G, the block tile: kBm rows, kBn = 64 kNc columns, kBk inputs (kKt 16-row tiles) per stage; kStages stages of
// kStage 16-byte pieces (a multiple of 64: 1024-byte aligned, as the swizzled boxes need), each A (kA pieces: kBk / 64
// boxes of kBm rows x 128 bytes, 128-byte swizzled), then B (kB), then the grouped scales.
// LANES: 32 for the mma.sync tiles' 256-input stages, whose 22 copies one thread could not issue fast enough (H200,
// 2026-12-02: the consumers waited on every stage, the long-scoreboard stall 30 % of their samples, and the 16 x 128
// tile was slower than its cp.async twin; with a copy per lane, 9-19 % faster than it on the large shapes); 1 for
// the wgmma tiles' 64-input stages (6 copies; with a warp, every M >= 64 shape ran 2-7 % slower than in the last
// session's final run, a comparison across processes only).
template <typename G, bool Grouped, int CLUSTER, int LANES>
__device__ __forceinline__ void produce_stages(const Params& p, const CUtensorMap* a_map, uint4* smem,
                                               std::uint64_t* full, std::uint64_t* empty, const Walk<CLUSTER>& walk) {
  static_assert(G::kStage % 64 == 0 && G::kA == G::kBm * G::kBk / 8, "1024-byte stages; A in boxes of 64 inputs");
  constexpr bool kCluster = CLUSTER > 1;
  constexpr int kBoxRows = G::kBm / CLUSTER, kBox = G::kBm * 8, kBoxShare = kBox / CLUSTER;  // pieces
  // Copy c of a stage: A's box c, B's 16-row tile c - kBoxes, then scale row c - kScaleCopy (at most kBk / 32: group
  // size 32); LANES threads issue them, lane l copies l, l + LANES, ...
  constexpr int kBoxes = G::kBk / 64, kScaleCopy = kBoxes + G::kKt, kCopies = kScaleCopy + G::kBk / 32;
  static_assert(LANES == 1 || (LANES == 32 && kCopies <= 32), "one thread, or a warp with a copy per lane");
  const int lane = LANES == 1 ? 0 : int(threadIdx.x % 32);
  const std::int64_t b_row = p.n_pad / 2, scale_row = p.n_pad / 8;  // 16-byte pieces per B row, per scale row
  const int scale_rows = Grouped ? (G::kBk > p.group_size ? G::kBk >> p.group_shift : 1) : 0;
  const std::int64_t count = walk.count();
  Cursor at = cursor_at(walk.begin(), p, G::kBm, G::kBn, CLUSTER, walk.rank);
  int buf = 0;
  unsigned phase = 0;
  auto next_buffer = [&] {
    if (++buf == G::kStages) {
      buf = 0;
      phase ^= 1u;
    }
  };
  for (std::int64_t i = 0; i < count; ++i) {
    if (i >= G::kStages) mbarrier_wait(&empty[buf], phase ^ 1u);  // the consumers' release of its last use
    uint4* const sa = smem + buf * G::kStage;
    uint4* const sb = sa + G::kA;
    uint4* const ss = sb + G::kB;
    const int chunks = min(G::kNc, (p.n_pad - at.n0) / 64);
    const int k_tile0 = at.stage * G::kKt, b_tiles = min(G::kKt, p.k_tiles - k_tile0);
    const int k0 = at.stage * G::kBk, boxes = min(G::kBk / 64, (p.k - k0 + 63) / 64);
    const int g0 = k0 >> p.group_shift, s_rows = Grouped ? min(scale_rows, p.groups - g0) : 0;
    if (lane == 0) {
      mbarrier_arrive_expect_tx(&full[buf], unsigned(boxes * kBox + (b_tiles * 32 + s_rows * 8) * chunks) * 16u);
    }
    if constexpr (LANES > 1) __syncwarp();
    for (int c = lane; c < kCopies; c += LANES) {
      if (c < kBoxes) {
        if (c >= boxes) continue;
        if constexpr (kCluster) {
          tma_load_2d_multicast(sa + c * kBox + walk.rank * kBoxShare, a_map, k0 + 64 * c, at.m0 + walk.rank * kBoxRows,
                                &full[buf], std::uint16_t((1u << CLUSTER) - 1u));
        } else {
          tma_load_2d(sa + c * kBox, a_map, k0 + 64 * c, at.m0, &full[buf]);
        }
      } else if (c < kScaleCopy) {
        const int t = c - kBoxes;
        if (t < b_tiles) {
          bulk_load(sb + t * G::kNc * 32, p.b + (k_tile0 + t) * b_row + (at.n0 / 64) * 32, chunks * 512u, &full[buf]);
        }
      } else if (c - kScaleCopy < s_rows) {
        const int r = c - kScaleCopy;
        bulk_load(ss + r * G::kNc * 8, p.s + (g0 + r) * scale_row + (at.n0 / 64) * 8, chunks * 128u, &full[buf]);
      }
    }
    advance(at, p, G::kBm, G::kBn, CLUSTER);
    next_buffer();
  }
  // In a cluster this CTA may exit only once the peers' consumers are done with its barriers: wait for the release
  // of every buffer's last use (the peers' arrivals included), which also means no peer reads this CTA's copies.
  if constexpr (kCluster) {
    for (std::int64_t i = count; i < count + G::kStages; ++i) {
      if (i >= G::kStages) mbarrier_wait(&empty[buf], phase ^ 1u);
      next_buffer();
    }
  }
}

// A fed block's start: thread 0 initializes the stage barriers (full: the producer's arrival, with the copies'
// bytes; empty: every consumer thread of the cluster), the block, or the cluster, meets so that each CTA's barriers
// are visible to every copy and arrival, and the roles split. The producer warpgroup hands its registers to the
// consumers, LANES threads of its first warp issue the copies (produce_stages), and it returns false; the consumers
// return true at their raised register count. BLOCKS: blocks per SM (RegisterSplit).
template <typename G, bool Grouped, int CLUSTER, int LANES, int BLOCKS>
__device__ __forceinline__ bool start_fed_block(const Params& p, const CUtensorMap* a_map, uint4* smem,
                                                std::uint64_t* full, std::uint64_t* empty) {
  // The thread index read once. Reading threadIdx.x at each test, ptxas laid out the 16-row TMA-fed tile's consumers
  // differently (313 instead of 299 instructions per stage) and M = 16 ran 5-6 % slower on 8192 x 28672 and
  // 28672 x 8192 than with the set-up written out in each kernel (H200, 2026-12-02, one call); read once, it is as
  // fast as that there, and the wgmma tiles 1.5-9 % faster than with theirs (M = 64 on 28672 x 8192 107.7 -> 99.0 us).
  const int tid = int(threadIdx.x);
  if (tid == 0) {
    for (int s = 0; s < G::kStages; ++s) {
      mbarrier_init(&full[s], 1);
      mbarrier_init(&empty[s], kConsumers * CLUSTER);
    }
    mbarrier_init_fence();
  }
  if constexpr (CLUSTER > 1) {
    cluster_sync();
  } else {
    __syncthreads();
  }
  if (tid >= kConsumers) {
    setmaxnreg_dec<RegisterSplit<BLOCKS>::kProducer>();
    if (tid < kConsumers + LANES) {
      produce_stages<G, Grouped, CLUSTER, LANES>(p, a_map, smem, full, empty, Walk<CLUSTER>(p));
    }
    return false;
  }
  setmaxnreg_inc<RegisterSplit<BLOCKS>::kConsumer>();
  return true;
}

}  // namespace qh::kernels::marlin
