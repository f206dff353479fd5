// The CUDA side of qharness, torch-free and C++17 (nvcc): launchers take raw device pointers, sizes and a
// cudaStream_t and return the CUDA error of the launch; impl/ validates tensors before calling them. Device queries
// never throw and work on a machine with no driver (they report why no device is usable).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace qh::kernels {

// Number of usable CUDA devices; 0 when there is no driver or no device.
int cuda_device_count();
// Why cuda_device_count() is 0, in words ("CUDA driver not found: ..."); empty when a device is usable.
std::string cuda_unavailable_reason();

struct DeviceInfo {
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  std::uint64_t memory_bytes = 0;
  std::uint64_t l2_bytes = 0;
  int sm_clock_khz = 0;   // maximum SM clock
  int mem_clock_khz = 0;  // maximum memory clock
  int mem_bus_bits = 0;
  int driver_version = 0;   // e.g. 13000 for 13.0
  int runtime_version = 0;
};
// Properties of device `device`; cudaSuccess or the error that stopped the query.
cudaError_t device_info(int device, DeviceInfo* out);

// Position-weighted byte checksum: sum = sum of b[i], weighted = sum of (i + 1) * b[i], both mod 2^64. Swapping,
// dropping or changing any byte changes it, and it reduces in parallel, so a host computation and a device one
// over the same bytes must agree exactly.
struct ByteChecksum {
  std::uint64_t sum = 0;
  std::uint64_t weighted = 0;
  bool operator==(const ByteChecksum& o) const { return sum == o.sum && weighted == o.weighted; }
};
ByteChecksum byte_checksum_host(const std::uint8_t* data, std::uint64_t n);
// Device version over `n` bytes at device pointer `data`; `result` is a device pointer to 2 uint64 (sum,
// weighted), overwritten. Asynchronous on `stream`.
cudaError_t launch_byte_checksum(const std::uint8_t* data, std::uint64_t n, std::uint64_t* result,
                                 cudaStream_t stream);

}  // namespace qh::kernels

namespace qh::kernels {

// One lazy-batch block of GPTQ's column loop (FORMATS.md 2.2 step 8) in float32: columns [col0, col0 + count) of
// every row, one warp per row (rows are independent inside a block), the block of the inverse-Hessian factor in
// shared memory. For each column i: code = clamp(rint(w / s) + z, 0, maxq), q = s (code - z),
// err = (w - q) / Hinv[i, i], then w[j] -= err * Hinv[i, j] for the later columns j of the block. The grid of column
// i is entry col_table[i] of the row's (scales, zeros) table. The trailing update of the columns after the block
// (W[:, col0+count:] -= err @ Hinv[block, after]) is one GEMM, left to the caller.
struct GptqBlockArgs {
  const float* w = nullptr;     // (rows, ld) row-major, working weights (read only)
  std::int64_t ld = 0;
  std::int64_t rows = 0;
  int col0 = 0;
  int count = 0;                // 1..kGptqMaxBlock
  const float* hinv = nullptr;  // (ldh, ldh) row-major upper factor of H^-1
  std::int64_t ldh = 0;
  const float* scales = nullptr;  // (rows, table) grid tables
  const float* zeros = nullptr;
  int table = 0;
  const int* col_table = nullptr;  // (count) device array: table entry of each block column
  int maxq = 15;
  float* q = nullptr;              // (rows, ld): dequantized weights written at the block's columns
  std::int32_t* codes = nullptr;   // (rows, ld)
  double* losses = nullptr;        // (rows, ld): (w - q)^2 / d^2 / 2, in double: it scales with H
  float* err = nullptr;            // (rows, count) contiguous: the errors for the trailing GEMM
};
inline constexpr int kGptqMaxBlock = 128;
cudaError_t launch_gptq_block(const GptqBlockArgs& args, cudaStream_t stream);

}  // namespace qh::kernels

namespace qh::kernels {

// Element type of a tensor a launcher reads or writes.
enum class DType { F16, BF16, F32 };

// GPTQ dequantization (FORMATS.md 1.2, 1.3, 1.5): W[k, n] = scale[g, n] * (q[k, n] - z[g, n]), g = g_idx[k], with
// q read from qweight's little-endian bit stream down K and z from qzeros' stream along N, plus `zero_offset`
// (1 for v1 "gptq" checkpoints, which store zero - 1; 0 for v2). The product is formed in float32 (exact for
// fp16/bf16 scales) and rounded once to `dtype`. One thread per (32 values of K, column): it reads `bits` words
// (fewer for a short last chunk: K need only be a multiple of 32 / bits for 2, 4 and 8 bits, of 32 for 3 bits).
struct GptqDequantArgs {
  const std::uint32_t* qweight = nullptr;  // (k * bits / 32, n)
  const std::uint32_t* qzeros = nullptr;   // (groups, n * bits / 32)
  const void* scales = nullptr;            // (groups, n) in `dtype`
  const std::int32_t* g_idx = nullptr;     // (k,), each in [0, groups) (checked by the caller; out of range -> NaN)
  std::int64_t k = 0, n = 0, groups = 0;
  int bits = 4;
  int zero_offset = 1;
  DType dtype = DType::F16;
  void* out = nullptr;                     // (k, n) row-major in `dtype`
};
cudaError_t launch_gptq_dequant(const GptqDequantArgs& args, cudaStream_t stream);

}  // namespace qh::kernels

namespace qh::kernels {

// GPTQ 4-bit qweight (k/8, n) -> Marlin B (k/16, 2n) in one pass (FORMATS.md 3.1 layout, 3.4 act-order gather):
// word c of tile row kt holds the 8 codes that Layer.pack puts there, each read straight from its qweight nibble.
// With `perm` (k,) (act-order: argsort of g_idx), tile position kk of row kt takes source row perm[kt*16 + kk].
// One warp per 16 x 64 piece. Requires k % 16 == 0, n % 64 == 0, qweight and out non-null, out 16-byte aligned
// (checked, before any CUDA call: cudaErrorInvalidValue).
cudaError_t launch_marlin_repack(const std::uint32_t* qweight, const std::int32_t* perm, std::int64_t k, std::int64_t n,
                                 std::uint32_t* out, cudaStream_t stream);

}  // namespace qh::kernels

namespace qh::kernels {

// Marlin GEMM: C (m, n) = A (m, k) x W + bias, W (k, n) given in the Marlin layout (FORMATS.md 3.1): B
// (k_pad/16, 2 n_pad) int32 of symmetric 4-bit codes (w = s (q - 8)) and s (groups, n_pad) in the grouped scale
// permutation (groups > 1) or the per-channel one (groups == 1). A, s, bias and C share one 16-bit type (F16 or BF16).
// Each weight is dequantized in registers to s (q - 8) rounded once to that type (the value the CPU reference
// dequantizes to), the products accumulate in float32 on the tensor cores (mma.sync m16n8k16 on sm_80+; wgmma for
// larger m on CC 9.0), and each output is rounded once after the bias is added. k may be smaller than k_pad (padded
// rows must hold code 8) and n smaller than n_pad (padded columns are never written).
//
// A configuration is one compiled block tile: rows() x (64 n_chunks) outputs, bk inputs per pipeline stage;
// the 8 warps of a block split the stage's 16-row tiles between them and reduce in shared memory (m <= 8 takes an
// 8-row tile that computes the transposed product, each weight word the mma's A operand and A's rows its n8 B
// operand; on CC 9.0 the m <= 32 tiles are fed by a producer warp through TMA and bulk copies, handshaking per stage
// through mbarriers instead of block-wide barriers; the wgmma ones: two consumer warpgroups own one or two 64-column
// chunks each over all of k, the tile's rows being the N of the transposed product C^T = W^T A^T, and end a tile
// from their registers, fed the same way by a producer warpgroup). The grid is persistent and stream-K: the
// tiles x stages units of work are cut into `blocks` equal ranges, one per block, so each block moves the same bytes
// whatever the shape (no partial last wave, no second kernel). A tile shared by several blocks is summed by the last
// of them to arrive, in block order (deterministic), through float32 parts in the workspace and a per-tile counter.
struct MarlinGemmConfig {
  int m_tiles = 1;
  int n_chunks = 2;
  int bk = 128;
  int stages = 4;     // cp.async pipeline depth
  int min_units = 1;  // units a block of the plan gets at least (fewer parts per tile through the workspace)
  // 80: mma.sync fed by cp.async, runs on sm_80 and later; 90: sm_90a machine code, CC 9.0 only, fed by a producer
  // through TMA and bulk copies into mbarrier stages (the consumers never meet at a block-wide barrier)
  int arch = 80;
  // CTAs per cluster (wgmma only): 2 pairs adjacent column tiles, which share their rows of A: each CTA of the pair
  // loads half of the stage's A for both (TMA multicast), halving A's reads of L2. The grid is then a multiple of
  // it, and so must be the column tiles.
  int cluster = 1;
  bool wgmma = false;  // arch 90: warpgroup MMA consumers; else the 8 mma.sync warps of the arch 80 tiles
  // The 8-row mma.sync tile of m <= 8 (m_tiles 1), which computes the transposed product C^T = W^T A^T: one
  // tensor-core product per weight word instead of two.
  bool narrow = false;
  constexpr int rows() const { return narrow ? 8 : 16 * m_tiles; }  // of the block tile
};
int marlin_gemm_config_count();
MarlinGemmConfig marlin_gemm_config(int index);
// Whether configuration `config` runs on a GPU of compute capability `arch` (major * 10 + minor).
bool marlin_gemm_config_runs_on(int config, int arch);
// Whether configuration `config` can compute an n-column output: its column tiles a multiple of its cluster.
bool marlin_gemm_config_fits(int config, std::int64_t n);

struct MarlinGemmPlan {
  int config = 0;
  int blocks = 1;  // grid size: 1 .. marlin_gemm_max_blocks
};
// The plan for a shape on a GPU with `sm_count` multiprocessors of compute capability `arch`: the smallest block
// tile that holds m rows (<= 16, <= 32, more; on CC 9.0 the TMA-fed <= 16 and <= 32 ones, then the wgmma ones:
// <= 64, <= 128, more, the last 256 x 128 instead of 128 x 256: half the dequantization per product, in CTA pairs
// sharing A where there are many tiles and the column tiles pair up; for m <= 64, 64 x 128 at two blocks per SM
// where 64 x 256 tiles would leave each SM few stages of work, else 64 x 256); then, when at least two blocks
// (clusters) per tile are resident at once (at most 2 blocks per SM), every tile cut into the same number of parts
// (ranges on tile boundaries), else, when A outgrows the L2, whole tiles per block, else stream-K over the resident
// blocks (clusters); never more blocks than the shape allows or than leave each block the configuration's
// min_units.
MarlinGemmPlan marlin_gemm_plan(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype, int sm_count,
                                int arch);
// Pipeline stages over k of configuration `config` (the units of one tile).
std::int64_t marlin_gemm_stages(int config, std::int64_t k);
// Output tiles of configuration `config` for an (m, n) output.
std::int64_t marlin_gemm_tiles(int config, std::int64_t m, std::int64_t n);
// The most blocks a plan may have: one unit each at least, and at most 31 per tile (a tile is then cut into at
// most 63 partial sums, which the error bounds of the tests count).
std::int64_t marlin_gemm_max_blocks(int config, std::int64_t m, std::int64_t n, std::int64_t k);
// Floats of workspace a launch needs: (blocks + tiles) slots of one tile each (contents need no initialization).
std::int64_t marlin_gemm_workspace_floats(int config, int blocks, std::int64_t m, std::int64_t n);

struct MarlinGemmArgs {
  const void* a = nullptr;           // (m, k) row-major, 16-byte aligned, k % 8 == 0
  const std::uint32_t* b = nullptr;  // (k_pad / 16, 2 n_pad), 16-byte aligned
  const void* s = nullptr;           // (groups, n_pad), 16-byte aligned
  const void* bias = nullptr;        // (n) or null
  std::int64_t m = 0, k = 0, n = 0, k_pad = 0, n_pad = 0;
  int group_size = -1;               // -1 (one scale row) or 32, 64, 128 (then groups = ceil(k / group_size))
  DType dtype = DType::F16;          // F16 or BF16
  void* c = nullptr;                 // (m, n) row-major
  float* workspace = nullptr;        // marlin_gemm_workspace_floats(...) floats
  // marlin_gemm_tiles(...) counters, all zero before the launch and left zero after it (the last block of a tile to
  // be done with it resets its counter): keep one zeroed buffer per stream and reuse it; two launches in flight at
  // once on different streams need different buffers.
  unsigned* counters = nullptr;
  MarlinGemmPlan plan;
};
// cudaErrorInvalidValue, before any CUDA call, for arguments outside the rules above (a, b, s, c, workspace and
// counters non-null; a clustered configuration: blocks a multiple of its cluster, and marlin_gemm_config_fits; the
// caller validates with messages first).
cudaError_t launch_marlin_gemm(const MarlinGemmArgs& args, cudaStream_t stream);

// out (m, k) = a[:, perm] for 16-bit elements: act-order layers feed the GEMM their inputs in B's row order.
cudaError_t launch_permute_columns(const void* a, const std::int32_t* perm, std::int64_t m, std::int64_t k, void* out,
                                   cudaStream_t stream);

}  // namespace qh::kernels

namespace qh::kernels {

// Probes of the GPU's limits for the perf harness (kernels/probes.cu). Asynchronous on `stream`; each returns the
// launch error (cudaErrorInvalidValue for a size that breaks its rule). `sm_count` sizes the grid.
// Copies `bytes` (a multiple of 16) from src to dst in 16-byte words: DRAM bandwidth when both exceed L2.
cudaError_t launch_probe_copy(const void* src, void* dst, std::uint64_t bytes, int sm_count, cudaStream_t stream);
// Reads `bytes` (a multiple of 16) `passes` times, bypassing L1: L2 bandwidth when the buffer fits in L2 (and, one
// pass over twice the L2 size, the benchmarks' L2 flush). `sink` is a device buffer of one unsigned per thread of the
// grid (probe_read_sink_count(sm_count)), almost never written.
std::size_t probe_read_sink_count(int sm_count);
cudaError_t launch_probe_read(const void* buf, std::uint64_t bytes, int passes, unsigned* sink, int sm_count,
                              cudaStream_t stream);
// `blocks` blocks of probe_int_alu_threads() threads run `steps` steps of dequantization-like integer instructions
// (LOP3, funnel shift, byte permute); probe_int_alu_ops() counts them. `sink`: one unsigned per thread.
cudaError_t launch_probe_int_alu(int blocks, int steps, unsigned* sink, cudaStream_t stream);
std::uint64_t probe_int_alu_ops(int blocks, int steps);
int probe_int_alu_threads();
// An empty kernel <<<1, 1>>>: the cost of a launch.
cudaError_t launch_probe_empty(cudaStream_t stream);
// out[0] = SM clock cycles elapsed on one SM over out[1] >= window_ns nanoseconds of the global timer.
cudaError_t launch_probe_sm_clock(std::uint64_t window_ns, unsigned long long* out, cudaStream_t stream);

}  // namespace qh::kernels
