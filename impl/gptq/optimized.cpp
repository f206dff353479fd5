#include <ATen/ATen.h>

#include <vector>

#include "impl/core/errors.h"
#include "impl/gptq/prepare.h"
#include "impl/gptq/reference.h"

#ifdef QH_WITH_CUDA
#include "kernels/kernels.h"
#endif

namespace qh::gptq {

namespace {

using at::indexing::Slice;

#ifdef QH_WITH_CUDA
// The grids a block's columns use, as one (N, table) table and the table entry of each block column. Non-static
// groups: entry 0 is the grid in force when the block starts, then one entry per group starting inside the block,
// found from W as it stands at the block's start (the published loop reads W, not the block's working copy, so
// nothing the kernel does changes them). New grids are appended to `scales`/`zeros` in the order found.
struct BlockGrids {
  QuantGrid table;
  std::vector<int> column_entry;
};

BlockGrids block_grids(const PreparedLayer& p, const GptqConfig& config, std::int64_t i1, std::int64_t count,
                       QuantGrid& current, std::vector<at::Tensor>& scales, std::vector<at::Tensor>& zeros,
                       const at::Tensor& perm_cpu) {
  BlockGrids b;
  b.column_entry.resize(std::size_t(count));
  if (config.group_size == -1) {
    b.table = p.channel_grid;
    return b;
  }
  const std::int64_t group = config.group_size;
  if (config.static_groups) {
    b.table = p.static_grids;
    const auto perm = perm_cpu.accessor<std::int64_t, 1>();
    for (std::int64_t i = 0; i < count; ++i) {
      b.column_entry[std::size_t(i)] = int((config.desc_act ? perm[i1 + i] : i1 + i) / group);
    }
    return b;
  }
  const std::int64_t first = (i1 + group - 1) / group * group;  // first group start at or after i1
  std::vector<at::Tensor> table_scales = {current.scale}, table_zeros = {current.zero};
  if (first < i1 + count) {
    const std::int64_t starts = (i1 + count - first + group - 1) / group;
    const QuantGrid fresh = find_group_grids(p.w.index({Slice(), Slice(first, first + starts * group)}), group,
                                             config.bits, config.sym);
    for (std::int64_t g = 0; g < starts; ++g) {
      scales.push_back(fresh.scale.index({Slice(), Slice(g, g + 1)}));
      zeros.push_back(fresh.zero.index({Slice(), Slice(g, g + 1)}));
    }
    table_scales.push_back(fresh.scale);
    table_zeros.push_back(fresh.zero);
    current = {scales.back(), zeros.back()};
  }
  b.table = {at::cat(table_scales, 1).contiguous(), at::cat(table_zeros, 1).contiguous()};
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t col = i1 + i;
    b.column_entry[std::size_t(i)] = col < first ? 0 : int((col - first) / group + 1);
  }
  return b;
}
#endif

}  // namespace

GptqResult gptq_optimized(const at::Tensor& weight, const at::Tensor& hessian, const GptqConfig& config,
                          const std::string& layer, std::int64_t calib_tokens, c10::Device device) {
#ifndef QH_WITH_CUDA
  (void)weight, (void)hessian, (void)calib_tokens, (void)device;
  throw ConfigError(Where{.layer = layer}, "the optimized GPTQ needs the CUDA kernels", "a build with QH_CUDA on",
                    "a build without CUDA");
#else
  if (!device.is_cuda()) {
    throw ConfigError(Where{.layer = layer}, "the optimized GPTQ runs on a CUDA device", "a cuda device",
                      device.str());
  }
  if (config.block_size > kernels::kGptqMaxBlock) {
    throw ConfigError(Where{.layer = layer}, "the optimized GPTQ keeps a block of H^-1 in shared memory",
                      "block_size <= " + std::to_string(kernels::kGptqMaxBlock), std::to_string(config.block_size));
  }
  PreparedLayer p = prepare_layer(weight, hessian, config, layer, calib_tokens, device, at::kFloat);
  at::Tensor& w = p.w;
  const std::int64_t n = w.size(0), k = w.size(1);
  at::Tensor q = at::empty_like(w);
  at::Tensor codes = at::empty({n, k}, w.options().dtype(at::kInt));
  at::Tensor losses = at::empty_like(w, w.options().dtype(at::kDouble));
  // Errors of one block, (n, count) contiguous, as the kernel writes them.
  const at::Tensor err_buffer = at::empty({n * std::min<std::int64_t>(config.block_size, k)}, w.options());
  std::vector<at::Tensor> scales, zeros;
  QuantGrid current = p.channel_grid;
  const at::Tensor perm_cpu = p.perm.cpu();
  for (std::int64_t i1 = 0; i1 < k; i1 += config.block_size) {
    const std::int64_t count = std::min<std::int64_t>(config.block_size, k - i1);
    const BlockGrids grids = block_grids(p, config, i1, count, current, scales, zeros, perm_cpu);
    const at::Tensor entries = at::tensor(grids.column_entry, at::kInt).to(device);
    const at::Tensor err = err_buffer.narrow(0, 0, n * count).view({n, count});
    kernels::GptqBlockArgs a;
    a.w = w.data_ptr<float>();
    a.ld = k;
    a.rows = n;
    a.col0 = int(i1);
    a.count = int(count);
    a.hinv = p.hinv.data_ptr<float>();
    a.ldh = k;
    a.scales = grids.table.scale.data_ptr<float>();
    a.zeros = grids.table.zero.data_ptr<float>();
    a.table = int(grids.table.scale.size(1));
    a.col_table = entries.data_ptr<int>();
    a.maxq = config.maxq();
    a.q = q.data_ptr<float>();
    a.codes = codes.data_ptr<std::int32_t>();
    a.losses = losses.data_ptr<double>();
    a.err = err.data_ptr<float>();
    // The legacy default stream: ATen's current stream unless a caller changed it.
    if (const cudaError_t e = kernels::launch_gptq_block(a, nullptr); e != cudaSuccess) {
      throw NumericError(Where{.layer = layer}, "the GPTQ block kernel failed to launch", "cudaSuccess",
                         cudaGetErrorString(e));
    }
    if (i1 + count < k) {
      w.narrow(1, i1 + count, k - i1 - count)
          .sub_(err.mm(p.hinv.index({Slice(i1, i1 + count), Slice(i1 + count, k)})));
    }
  }
  return finish_layer(p, config, q, codes, losses, scales, zeros);
#endif
}

}  // namespace qh::gptq
