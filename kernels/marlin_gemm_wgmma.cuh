// The Hopper path of the Marlin GEMM (sm_90a; included by marlin_gemm.cu only): 64 x 256, 128 x 256 and 256 x 128
// output tiles on warpgroup MMA, fed by a producer warpgroup (marlin_gemm_tma.cuh), so the two consumer warpgroups
// never meet at a block-wide barrier and drift apart freely. Facts used from the PTX ISA: the wgmma forms, the
// shared-memory matrix descriptor's bit fields, the 128-byte swizzle.
#pragma once

#include "kernels/marlin_gemm_common.cuh"
#include "kernels/marlin_gemm_tma.cuh"

namespace qh::kernels::marlin {

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
#if QH_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if QH_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if QH_SM90A
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

// d (64 x N, float32) += a (64 x 16, registers: warp w of the warpgroup holds rows 16 w .. 16 w + 15 in the mma.sync
// m16n8k16 A layout) x b (16 x N, K-major in shared memory through `desc`). d[r] of a thread (lane l) is row
// 16 w + l / 4 + 8 ((r / 2) % 2), column 2 (l % 4) + r % 2 + 8 (r / 4). accumulate == 0: d = a x b (d's old
// contents unread: no instruction has to zero the accumulators, so none writes them but the wgmma).
// The accumulator operands d[i] .. d[i + 31], then a, the descriptor and the accumulate flag.
#define QH_D8(i) \
  "+f"(d[(i)]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]), "+f"(d[(i) + 5]), \
      "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define QH_D32(i) QH_D8(i), QH_D8((i) + 8), QH_D8((i) + 16), QH_D8((i) + 24)
#define QH_WGMMA_A_OPERANDS "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate)
// The accumulator placeholders of the asm below, in runs of 32.
#define QH_R0_31 \
  "%0, %1, %2, %3, %4, %5, %6, %7, " \
  "%8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31"
#define QH_R32_63 \
  "%32, %33, %34, %35, %36, %37, %38, %39, " \
  "%40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, " \
  "%56, %57, %58, %59, %60, %61, %62, %63"
#define QH_R64_95 \
  "%64, %65, %66, %67, %68, %69, %70, %71, " \
  "%72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, " \
  "%88, %89, %90, %91, %92, %93, %94, %95"
#define QH_R96_127 \
  "%96, %97, %98, %99, %100, %101, %102, %103, " \
  "%104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, " \
  "%120, %121, %122, %123, %124, %125, %126, %127"
#define QH_WGMMA_M64N64K16(TYPE) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {" QH_R0_31 "}, " \
      "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n" \
      : QH_D32(0) \
      : QH_WGMMA_A_OPERANDS)
#define QH_WGMMA_M64N128K16(TYPE) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {" QH_R0_31 ", " QH_R32_63 "}, " \
      "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n" \
      : QH_D32(0), QH_D32(32) \
      : QH_WGMMA_A_OPERANDS)
#define QH_WGMMA_M64N256K16(TYPE) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {" QH_R0_31 ", " QH_R32_63 ", " \
      QH_R64_95 ", " QH_R96_127 "}, " \
      "{%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n" \
      : QH_D32(0), QH_D32(32), QH_D32(64), QH_D32(96) \
      : QH_WGMMA_A_OPERANDS)

template <typename T, int N>
__device__ __forceinline__ void wgmma_m64k16(float (&d)[N / 2], const std::uint32_t (&a)[4], std::uint64_t desc,
                                             int accumulate) {
  static_assert(N == 64 || N == 128 || N == 256, "the widths the wgmma tiles use");
#if QH_SM90A
  constexpr bool kHalf = std::is_same_v<T, __half>;
  if constexpr (N == 64 && kHalf) {
    QH_WGMMA_M64N64K16("f16");
  } else if constexpr (N == 64) {
    QH_WGMMA_M64N64K16("bf16");
  } else if constexpr (N == 128 && kHalf) {
    QH_WGMMA_M64N128K16("f16");
  } else if constexpr (N == 128) {
    QH_WGMMA_M64N128K16("bf16");
  } else if constexpr (kHalf) {
    QH_WGMMA_M64N256K16("f16");
  } else {
    QH_WGMMA_M64N256K16("bf16");
  }
#else
  __trap();
#endif
}
#undef QH_WGMMA_M64N64K16
#undef QH_WGMMA_M64N128K16
#undef QH_WGMMA_M64N256K16
#undef QH_WGMMA_A_OPERANDS
#undef QH_D32
#undef QH_D8
#undef QH_R0_31
#undef QH_R32_63
#undef QH_R64_95
#undef QH_R96_127

// A tile of kBm rows x NC 64-column chunks, computed by two consumer warpgroups (each owns kCpw = NC / 2 chunks over
// all of k and ends the tile from its registers) fed by the producer warpgroup (kFedThreads in all). A stage: the
// tile's A rows (kBm x 64 inputs, 128-byte swizzled: the TMA box), then the B pieces of its four 16-row tiles (kNc
// chunks each, in the global order), then up to two rows of grouped scales (group size 32), padded to 1024 bytes.
template <int MT, int NC, int STAGES>
struct WgmmaTile {
  static constexpr int kBm = 16 * MT, kNc = NC, kCpw = NC / 2, kBn = 64 * kNc, kBk = 64, kStages = STAGES;
  static constexpr int kKt = kBk / 16;
  static constexpr int kA = kBm * kBk / 8;  // 16-byte pieces
  static constexpr int kB = kKt * kNc * 32;
  static constexpr int kS = (kBk / 32) * kNc * 8;
  static constexpr int kStage = (kA + kB + kS + 63) / 64 * 64;
  // The swizzled operand atoms (and the TMA box) need 1024-byte alignment: the kernel rounds its base up, within
  // this padding.
  static constexpr int kSmemBytes = 1024 + STAGES * kStage * 16;
  // Blocks per SM: the 64 x 128 tile (32 accumulators per thread) fits two, so 16 consumer warps share an SM.
  static constexpr int kBlocksPerSm = kBm * kBn <= 64 * 128 ? 2 : 1;
  static_assert((kBm == 64 || kBm == 128 || kBm == 256) && (NC == 2 || NC == 4),
                "64, 128 or 256 rows (the wgmma's N, at most 256), one or two chunks per consumer warpgroup");
};


// The consumers. The product is transposed, C^T = W^T A^T: warpgroup `group` owns 64-column chunks kCpw group ..
// kCpw group + kCpw - 1 over all of the block's range; warp `quarter` of it holds (the wgmma layout) columns
// 16 quarter .. + 15 of each chunk: its lane's word `quarter` of the chunk's 16x64 B piece, which holds exactly the
// mma.sync B fragments of those columns, i.e. the A fragment of the transposed product. The tile's kBm rows are the
// N of one wgmma: kBm / 2 accumulators per chunk and thread. A is read by the tensor cores from the stage (the
// descriptor).
template <typename T, int MT, int NC, int STAGES, bool Grouped, int CLUSTER>
__device__ __forceinline__ void consume_stages(const Params& p, const uint4* smem, std::uint64_t* full,
                                               std::uint64_t* empty, const Walk<CLUSTER>& walk) {
  using G = WgmmaTile<MT, NC, STAGES>;
  using Pair = typename Elem<T>::Pair;
  constexpr int kAcc = G::kBm / 2;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, group = warp / 4, quarter = warp % 4;
  constexpr int kCpw = G::kCpw;
  float wacc[kCpw][kAcc] = {};
  // Per-channel scales, per tile: the pair of this thread's columns 16 quarter + lane / 4 + {0, 8} of each chunk
  // (the order the grouped layout gives a word), read from the permuted row (FORMATS.md 3.1).
  std::uint32_t channel_words[kCpw] = {};
  auto load_channel_words = [&](int n0) {
#pragma unroll
    for (int cc = 0; cc < kCpw; ++cc) {
      T pair[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        pair[e] = channel_scale<T>(p, n0 + 64 * (kCpw * group + cc) + 16 * quarter + lane / 4 + 8 * e);
      }
      channel_words[cc] = bits_as<std::uint32_t>(pair);
    }
  };
  bool fresh = true;  // the next stage is the first of this block's part of a tile: its first products overwrite
  // The stage buffer whose products may still be in flight; released (its empty barrier arrived on, in a pair the
  // peer's too: both producers write A into it) once a wait has retired them. Every consumer thread arrives: one
  // arrival per warp after a __syncwarp was 1-2 % slower at M = 64 (H200, 2026-12-02) and racecheck cannot see the
  // warp's other reads ordered before the refill (it reported them as hazards).
  int pending = -1;
  auto release_pending = [&] {
    if (pending >= 0) {
      mbarrier_arrive(&empty[pending]);
      if constexpr (CLUSTER > 1) mbarrier_arrive_cluster(&empty[pending], unsigned(walk.rank ^ 1));
    }
    pending = -1;
  };
  // This thread's words and scale words of a stage, read from shared memory before the stage's first wait on its
  // products: a wgmma wait is a compiler barrier, so a read after it put shared-memory latency on every tile's path.
  // Chunks past n_pad and tiles past k read stale (in-bounds) words; a select replaces each by kZeroWord and its
  // scale by 0, which dequantize to +0 exactly ((8 - 8) 0), the zeros those products need, without a branch per word
  // (one under each test made ptxas wrap every word in BSSY / BSYNC, rebuild the constants in it and sink the loads
  // into it: ~22 instructions a word instead of 13, H200 ncu, M = 64).
  struct StageWords {
    std::uint32_t word[G::kKt][kCpw], scale[G::kKt][kCpw];
  };
  auto read_stage = [&](const Cursor& at, const uint4* stage_base, StageWords& w) {
    const std::uint32_t* const sb = reinterpret_cast<const std::uint32_t*>(stage_base + G::kA);
    const std::uint32_t* const ss = reinterpret_cast<const std::uint32_t*>(stage_base + G::kA + G::kB);
    // A stage's 64 inputs span one scale row at group 64 and up, two at group 32 (tiles 2 and 3 take the second):
    // both rows are read once per chunk (the second stale but in bounds when unused), not once per tile. H100,
    // 2026-12-07, against a load per tile: 1-5 % faster on every M = 64 / 256 / 1024 shape (8192 x 28672 M = 1024
    // 696.6 -> 671.3 us, M = 64 89.0 -> 86.4).
    static_assert(G::kBk == 64, "at most two scale rows per stage");
    const bool two_rows = Grouped && p.group_size < G::kBk;
    std::uint32_t row0[kCpw], row1[kCpw];
#pragma unroll
    for (int cc = 0; cc < kCpw; ++cc) {
      const std::uint32_t* const at_chunk = ss + ((kCpw * group + cc) * 8 + lane / 4) * 4 + quarter;
      row0[cc] = Grouped ? at_chunk[0] : 0u;
      row1[cc] = Grouped ? at_chunk[G::kNc * 8 * 4] : 0u;
    }
#pragma unroll
    for (int t = 0; t < G::kKt; ++t) {
      const bool tile_ok = at.stage * G::kKt + t < p.k_tiles;
#pragma unroll
      for (int cc = 0; cc < kCpw; ++cc) {
        const int chunk = kCpw * group + cc;
        const bool ok = tile_ok && at.n0 + 64 * chunk < p.n_pad;
        const std::uint32_t word = sb[((t * G::kNc + chunk) * 32 + lane) * 4 + quarter];
        // A select (t is known here): indexing the rows by the runtime test put them in local memory (STL / LDL
        // per stage, H100 ncu).
        const std::uint32_t scale = !Grouped ? channel_words[cc] : t >= 2 && two_rows ? row1[cc] : row0[cc];
        w.word[t][cc] = ok ? word : kZeroWord;
        w.scale[t][cc] = ok ? scale : 0u;
      }
    }
  };
  // The A fragments of 16-row tile t of a stage, chunk cc: (q - 8) s of the thread's word, rows l / 4 (the first
  // 8-column half) and l / 4 + 8 (the second), inputs 2 (l % 4) .. and + 8 ... Past k and n_pad they are the zeros of
  // read_stage's selects, and every wgmma is issued on them (one under a branch the compiler cannot prove uniform
  // over the warpgroup is serialized, C7520).
  auto dequant_tile = [&](const StageWords& w, int t, std::uint32_t (&frag)[kCpw][4]) {
#pragma unroll
    for (int cc = 0; cc < kCpw; ++cc) {
      const Pair both = bits_as<Pair>(w.scale[t][cc]);
      std::uint32_t b[4];
      dequant_word<T>(w.word[t][cc], Pair{both.x, both.x}, Pair{both.y, both.y}, b);
      frag[cc][0] = b[0];
      frag[cc][1] = b[2];
      frag[cc][2] = b[1];
      frag[cc][3] = b[3];
    }
  };
  // Per pair of 16-row tiles: dequantize both, then issue their four wgmmas as one group; the next pair's
  // dequantization overlaps them (two fragment buffers: waiting for all groups but the newest frees the one about to
  // be written). The stage's last group stays in flight into the next stage, whose first wait retires it and so
  // frees the buffer. H200, 2026-12-02: reading the stage's words first took 5-7 % off M = 256 / 1024, pairs a
  // further ~1 % (one group per tile before).
  auto compute_stage = [&](const Cursor& at, int buf) {
    const uint4* const sa = smem + buf * G::kStage;
    const std::uint64_t desc = kmajor_sw128_desc(sa);
    StageWords words;
    read_stage(at, sa, words);
    std::uint32_t frag[2][2][kCpw][4];
#pragma unroll
    for (int h = 0; h < G::kKt / 2; ++h) {
      dequant_tile(words, 2 * h, frag[h % 2][0]);
      dequant_tile(words, 2 * h + 1, frag[h % 2][1]);
      wgmma_fence();
#pragma unroll
      for (int j = 0; j < 2; ++j) {
#pragma unroll
        for (int cc = 0; cc < kCpw; ++cc) {
          const int t = 2 * h + j;
          wgmma_m64k16<T, G::kBm>(wacc[cc], frag[h % 2][j][cc], desc + 2 * t, t > 0 || !fresh);
        }
      }
      wgmma_commit();
      wgmma_wait<1>();
      if (h == 0) release_pending();
    }
    fresh = false;
  };

  // The end of this block's part of a tile, from the registers, which it only reads: an accumulator written outside
  // the wgmma (zeroed, or summed into) makes nvcc join two values of it where the loop goes on, and ptxas then waits
  // for the in-flight products there every stage (C7517). A tile done by one block is written out; otherwise the
  // part goes to its workspace slot (CLUSTER (walk block + walk tile) + rank: unique, as both only grow along the
  // ranges) as each thread's accumulators in register order (float4 quad j of chunk cc at (cc kAcc / 4 + j)
  // kConsumers + tid: whole 512-byte runs per warp), and the parts are summed in block order (deterministic: the same
  // whichever arrives last) and written out: by the tile's blocks, a share each, where they all start and end on its
  // boundaries (spread_arrive); otherwise by the last block to arrive, four quads at a time. Quad i of chunk
  // cc holds output rows 8 i + 2 (l % 4) + {0, 1} (the transposed product's columns) at columns 16 quarter + l / 4 +
  // {0, 8} of the chunk (its rows): accumulator 4 i + 2 e + h is row + h, column + 8 e.
  auto quad = [&](int cc, int i) {
    return make_float4(wacc[cc][4 * i], wacc[cc][4 * i + 1], wacc[cc][4 * i + 2], wacc[cc][4 * i + 3]);
  };
  auto store_quad = [&](const Cursor& at, int cc, int i, const float4& v) {
    const int row = at.m0 + 2 * (lane % 4) + 8 * i;
    const int col = at.n0 + 64 * (kCpw * group + cc) + 16 * quarter + lane / 4;
    write_output<T>(p, row, col, v.x);
    write_output<T>(p, row + 1, col, v.y);
    write_output<T>(p, row, col + 8, v.z);
    write_output<T>(p, row + 1, col + 8, v.w);
  };
  auto finish_tile = [&](const Cursor& at) {
    wgmma_wait<0>();  // the tile's last products
    release_pending();
    fresh = true;
    const std::int64_t t = at.t, w = t / CLUSTER;  // the tile and its walk step
    const TileParts tile = tile_parts_of(p, w, walk.units, walk.blocks);
    constexpr int kQuadsPer = kAcc / 4, kQuads = kCpw * kQuadsPer, kSlot = kQuads * kConsumers;  // per thread
    if (tile.parts == 1) {
#pragma unroll
      for (int cc = 0; cc < kCpw; ++cc) {
#pragma unroll
        for (int i = 0; i < kQuadsPer; ++i) store_quad(at, cc, i, quad(cc, i));
      }
      return;
    }
    float4* const workspace = reinterpret_cast<float4*>(p.workspace);
    float4* const slot = workspace + ((walk.block + w) * CLUSTER + walk.rank) * kSlot + tid;
#pragma unroll
    for (int cc = 0; cc < kCpw; ++cc) {
#pragma unroll
      for (int i = 0; i < kQuadsPer; ++i) slot[(cc * kQuadsPer + i) * kConsumers] = quad(cc, i);
    }
    const float4* const tile_parts = workspace + ((tile.first + w) * CLUSTER + walk.rank) * kSlot + tid;
    // The 128 x 256 tile (m <= 128) keeps the last block's sum: with this code beside it, ptxas spilled two of its
    // loop's shared-memory indices (a local load of each per stage), its 128 accumulators at the 168-register cap.
    constexpr bool kSpreads = !(G::kBm == 128 && kCpw == 2);
    if (kSpreads && tile.parts <= kSpreadMaxParts && parts_start_together(p, w, tile, walk.units, walk.blocks)) {
      // The tile's blocks arrive together: each sums a share of it (spread_arrive). H100, 2026-12-08, one call,
      // against the last block summing every part: M = 256 on 4096 x 4096 33.9 -> 26.6 us and on 11008 x 4096
      // 52.3 -> 44.1, M = 64 on those 19.8 -> 16.0 and 29.6 -> 25.9, on 28672 x 8192 86.2 -> 81.8, 8192 x 8192
      // 35.2 -> 33.6; M = 1024 within 1 %.
      const int parts = int(tile.parts), share = int(walk.block - tile.first);
      const SpreadTurn turn = spread_arrive(p, t, parts, share, sync_consumers);
      // The shares to sum (a bit each): this block's own, then, after it, the last block's sweep of those unclaimed
      // (one loop: one copy of the sum in the code).
      unsigned todo = turn.own ? 1u << share : 0u;
      for (bool swept = !turn.last;; swept = true) {
        for (; todo != 0; todo &= todo - 1) {
          // Two of the share's quads at a time, so that two quads' loads of every part are in flight per round trip.
          for (int q = __ffs(int(todo)) - 1; q < kQuads; q += 2 * parts) {
            const bool second = q + parts < kQuads;
            float4 sum[2] = {make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
#pragma unroll 4
            for (int part = 0; part < parts; ++part) {
              const float4* const at_part = tile_parts + std::int64_t(part) * CLUSTER * kSlot + q * kConsumers;
              add_to(sum[0], __ldcg(at_part));
              if (second) add_to(sum[1], __ldcg(at_part + parts * kConsumers));
            }
            store_quad(at, q / kQuadsPer, q % kQuadsPer, sum[0]);
            if (second) store_quad(at, (q + parts) / kQuadsPer, (q + parts) % kQuadsPer, sum[1]);
          }
        }
        if (swept) break;
        todo = spread_sweep(p, t, parts, share, sync_consumers);
      }
      return;
    }
    if (!last_to_arrive(p, t, tile.parts, sync_consumers)) return;
    // The sum keeps kDepth parts' loads in flight per batch of quads; one at a time it waited one L2 round trip per
    // part and batch on the kernel's tail (the 256 x 128 tile: 8 batches). The accumulators stay live (the next
    // tile's wgmmas read them), so depth 4 spilled for the 128-accumulator tiles. H100, 2026-12-07, against one
    // part at a time (depth 4/2/2 for 64 x 256, 256 x 128, 128 x 256): M = 256 4096 x 4096 36.2 -> 33.6 us (4 parts
    // a tile), 4096 x 11008 / 11008 x 4096 4-5 % faster, M = 1024 small shapes 2-4 %, the large shapes 0-1 %; the
    // 64 x 128 tile at two blocks per SM (M = 64 small shapes, 8 parts) was 3 % slower at depth 2, so it stays at 1.
    constexpr int kBatch = 4;
    constexpr int kDepth = G::kBlocksPerSm == 2 ? 1 : kCpw * kAcc <= 64 ? 4 : 2;
    static_assert(kQuadsPer % kBatch == 0, "whole batches of quads per chunk");
#pragma unroll
    for (int q0 = 0; q0 < kQuads; q0 += kBatch) {
      float4 sum[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) sum[b] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll(kDepth)
      for (std::int64_t part = 0; part < tile.parts; ++part) {
#pragma unroll
        for (int b = 0; b < kBatch; ++b) {
          add_to(sum[b], __ldcg(tile_parts + part * CLUSTER * kSlot + (q0 + b) * kConsumers));
        }
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) store_quad(at, (q0 + b) / kQuadsPer, (q0 + b) % kQuadsPer, sum[b]);
    }
  };

  const std::int64_t count = walk.count();
  Cursor computing = cursor_at(walk.begin(), p, G::kBm, G::kBn, CLUSTER, walk.rank);
  int buf = 0;
  unsigned phase = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    if (!Grouped && (i == 0 || computing.stage == 0)) load_channel_words(computing.n0);  // a new tile
    mbarrier_wait(&full[buf], phase);
    compute_stage(computing, buf);
    pending = buf;
    if (i + 1 == count || computing.stage + 1 == p.stages) finish_tile(computing);
    advance(computing, p, G::kBm, G::kBn, CLUSTER);
    if (++buf == STAGES) {
      buf = 0;
      phase ^= 1u;
    }
  }
  wgmma_wait<0>();
}

// Its own name, so that the SASS check can ask for HGMMA in it; a trap on every target but sm_90a. CLUSTER > 1: the
// host launches it in clusters of that many CTAs (the dynamic shared memory starts at the same offset in each, so
// the multicast copies land at the same stage offsets).
template <typename T, int MT, int NC, int STAGES, bool Grouped, int CLUSTER>
__global__ void __launch_bounds__(kFedThreads, WgmmaTile<MT, NC, STAGES>::kBlocksPerSm)
    marlin_gemm_wgmma_kernel(const __grid_constant__ TmaParams wp) {
#if QH_SM90A
  using G = WgmmaTile<MT, NC, STAGES>;
  static_assert(CLUSTER == 1 || CLUSTER == 2, "single CTAs or pairs");
  extern __shared__ uint4 dynamic_smem[];
  uint4* const smem = dynamic_smem + (1024 - smem_address(dynamic_smem) % 1024) % 1024 / 16;
  __shared__ std::uint64_t full[STAGES], empty[STAGES];  // per stage buffer: its data landed; its data consumed
  if (!start_fed_block<G, Grouped, CLUSTER, 1, G::kBlocksPerSm>(wp.p, &wp.a_map, smem, full, empty)) return;
  const Walk<CLUSTER> walk(wp.p);
  consume_stages<T, MT, NC, STAGES, Grouped, CLUSTER>(wp.p, smem, full, empty, walk);
#else
  __trap();
#endif
}

}  // namespace qh::kernels::marlin
