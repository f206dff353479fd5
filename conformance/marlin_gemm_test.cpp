// The Marlin GEMM (kernels/marlin_gemm.cu through impl/marlin/gemm) against dequantize + GEMM in float64.
// Layers are built here from random codes and scales with the layout functions (pack_weights, permute_scales) and
// the padding rule of docs/marlin.md, independently of the conversion code; the reference weight is
// s[g(k), n] (q - 8) rounded once to the activation dtype, in the original input order.
//
// Tolerance, derived: the kernel multiplies exactly those rounded weights (a 4-bit code times a 16-bit scale
// rounded once is what the reference rounds to), so what differs is the float32 accumulation and the final
// rounding. Tensor cores add exact fp16/bf16 products into float32 with truncation, at most one float32 ulp
// (2^-23 relative) per addition (Fasi, Higham, Mikaitis, Pranesh, "Numerical behavior of NVIDIA tensor cores",
// PeerJ CS 2021); an output sums K products plus at most 8 warp partials and 64 stream-K parts (a tile is shared
// by at most 31 blocks: kernels.h), so the error is at most (K + 72) 2^-23 sum |x||w|, then one rounding to the
// output type, u |y| (u = 2^-11 fp16, 2^-8 bf16), plus the smallest subnormal for results that round to it. A
// wrong code, scale or index is off by about |w|.
//
// Pins: vLLM and AutoGPTQ Marlin kernels refusing real shapes (N = 2736, tensor-parallel K = 320), act-order
// layers multiplied in the wrong input order, bias dropped in the fused path (GPTQModel PR #1846), and the
// nvcc 13 sm_90 cp.async miscompile that only a run of every instantiation catches.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <utility>

#include "conformance/gpu_testing.h"
#include "conformance/model_case.h"
#include "conformance/testing.h"
#include "impl/checkpoint/loader.h"
#include "impl/checkpoint/writer.h"
#include "impl/cli/convert_command.h"
#include "impl/core/errors.h"
#include "impl/marlin/gemm.h"
#include "impl/marlin/layout.h"
#include "impl/model/module.h"

#ifdef QH_WITH_CUDA
#include "kernels/kernels.h"
#endif

namespace qh::marlin {
namespace {

#ifdef QH_WITH_CUDA
// Compute capability of GPU 0 as major * 10 + minor (the kernels' `arch`); 0 when it cannot be read.
int device_arch() {
  kernels::DeviceInfo info;
  return kernels::device_info(0, &info) == cudaSuccess ? 10 * info.cc_major + info.cc_minor : 0;
}
#endif

struct Case {
  std::int64_t m = 16, k = 256, n = 128;
  int group = 128;
  bool act_order = false;
  bool bias = false;
  at::ScalarType dtype = at::kHalf;

  std::string name() const {
    return "m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n) +
           " group=" + std::to_string(group) + (act_order ? " act-order" : "") + (bias ? " bias" : "") + " " +
           c10::toString(dtype);
  }
};

// A layer with random codes and scales, in the stored layout, and its reference weight (K, N) in the input order.
struct Layer {
  MarlinWeights weights;
  at::Tensor w;  // float64 on the device
};

Layer make_layer(const Case& c, c10::Device device, std::uint64_t seed) {
  at::manual_seed(seed);
  MarlinSpec spec{c.k, c.n, c.group, c.act_order};
  const std::int64_t groups = spec.groups(), k_pad = spec.k_padded(), n_pad = spec.n_padded();
  const at::Tensor codes = at::randint(16, {c.k, c.n}, at::kLong);
  // Scales of both signs over two decades, rounded to the dtype like a checkpoint's.
  const at::Tensor scales = ((at::rand({groups, c.n}, at::kDouble) * 0.02 + 0.0002) *
                             (at::randint(2, {groups, c.n}, at::kDouble) * 2 - 1)).to(c.dtype);
  at::Tensor g_idx = c.group == -1 ? at::zeros({c.k}, at::kLong) : at::arange(c.k, at::kLong).div(c.group, "floor");
  at::Tensor perm;
  if (c.act_order) {
    // GPTQ act-order: groups are formed in a random column order (FORMATS.md 1.6), so g_idx is scattered; B holds
    // the rows sorted by group. One group: any order is valid, so use a random one.
    const at::Tensor order = at::randperm(c.k, at::kLong);
    if (c.group != -1) g_idx = at::argsort(order).div(c.group, "floor");
    perm = c.group == -1 ? order : at::argsort(g_idx, /*stable=*/true);
  }
  const at::Tensor w = (scales.to(at::kDouble).index_select(0, g_idx) * (codes.to(at::kDouble) - 8)).to(c.dtype);

  const at::Tensor rows = perm.defined() ? codes.index_select(0, perm) : codes;
  at::Tensor padded = at::full({k_pad, n_pad}, 8, at::kLong);
  padded.narrow(0, 0, c.k).narrow(1, 0, c.n).copy_(rows);
  at::Tensor s = at::zeros({groups, n_pad}, c.dtype);
  s.narrow(1, 0, c.n).copy_(scales);

  Layer layer;
  layer.weights.spec = spec;
  layer.weights.b = pack_weights(padded, "test").to(device);
  layer.weights.s = permute_scales(s, groups > 1, "test").to(device);
  if (perm.defined()) layer.weights.perm = perm.to(at::kInt).to(device);
  if (c.bias) layer.weights.bias = at::randn({c.n}, at::kDouble).to(c.dtype).to(device);
  layer.w = w.to(at::kDouble).to(device);
  return layer;
}

at::Tensor random_input(const Case& c, c10::Device device) {
  return at::randn({c.m, c.k}, at::kDouble).to(c.dtype).to(device);
}

// Largest violation of the derived bound (<= 0 passes) and where it happens.
void expect_matches_reference(const at::Tensor& y, const at::Tensor& x, const Layer& layer, const Case& c) {
  ASSERT_EQ(y.sizes().vec(), (std::vector<std::int64_t>{c.m, c.n})) << c.name();
  ASSERT_EQ(y.scalar_type(), c.dtype) << c.name();
  const at::Tensor xd = x.to(at::kDouble);
  at::Tensor ref = xd.matmul(layer.w);
  if (layer.weights.bias.defined()) ref = ref + layer.weights.bias.to(at::kDouble);
  const double u = c.dtype == at::kHalf ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
  const double tiny = c.dtype == at::kHalf ? std::ldexp(1.0, -24) : 1e-38;
  const at::Tensor bound =
      double(c.k + 72) * std::ldexp(1.0, -23) * xd.abs().matmul(layer.w.abs()) + u * ref.abs() + tiny;
  const at::Tensor excess = (y.to(at::kDouble) - ref).abs() - bound;
  ASSERT_TRUE(at::isfinite(y).all().item<bool>()) << c.name() << ": output not finite (unwritten or overflow)";
  const double worst = excess.max().item<double>();
  if (worst > 0) {
    const std::int64_t at = excess.argmax().item<std::int64_t>();
    ADD_FAILURE() << c.name() << ": output (" << at / c.n << ", " << at % c.n << ") = "
                  << y.flatten()[at].item<double>() << ", reference " << ref.flatten()[at].item<double>()
                  << ", bound " << bound.flatten()[at].item<double>();
  }
}

void run_case(const Case& c, const GemmOptions& options = {}, std::uint64_t seed = 1) {
  const c10::Device gpu(c10::kCUDA, 0);
  const Layer layer = make_layer(c, gpu, seed);
  const at::Tensor x = random_input(c, gpu);
  expect_matches_reference(gemm(x, layer.weights, "test", options), x, layer, c);
}

// The sweep: M in 1..16, 17, 64, 256, 1024 with the shape-based dispatch, for groups -1/128, act-order and
// bias on and off, fp16 and bf16 (bf16 is what most current models run in).
TEST(GpuMarlinGemm, RowCountsGroupsActOrderBiasBothDtypes) {
  QH_REQUIRE_CUDA();
  std::vector<std::int64_t> ms;
  for (std::int64_t m = 1; m <= 16; ++m) ms.push_back(m);
  for (std::int64_t m : {17, 64, 256, 1024}) ms.push_back(m);
  for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
    for (int group : {-1, 128}) {
      for (bool act_order : {false, true}) {
        for (bool bias : {false, true}) {
          for (std::int64_t m : ms) run_case({m, 512, 384, group, act_order, bias, dtype});
        }
      }
    }
  }
}

// Many K and N, including the shapes the published kernels refuse: N = 2736 (vLLM "not divisible by min_thread_n
// = 64"), a tensor-parallel K = 320 with group 128 (a partial last group), K not a multiple of 16 per-channel, and
// Llama-size layers (K = 11008: tiles shared by several stream-K blocks at small M).
TEST(GpuMarlinGemm, ShapesIncludingPaddedOnes) {
  QH_REQUIRE_CUDA();
  struct Shape {
    std::int64_t k, n;
    int group;
  };
  for (const Shape& s : {Shape{128, 64, 128}, Shape{256, 192, 32}, Shape{512, 320, 64}, Shape{4096, 4096, 128},
                         Shape{11008, 1024, 128}, Shape{1024, 2736, 128}, Shape{320, 512, 128}, Shape{40, 80, -1},
                         Shape{2736, 320, 128}, Shape{96, 4160, -1}}) {
    for (std::int64_t m : {1, 7, 33, 130}) {
      for (bool act_order : {false, true}) {
        run_case({m, s.k, s.n, s.group, act_order, true, m % 2 ? at::kBFloat16 : at::kHalf});
      }
    }
  }
}

#ifdef QH_WITH_CUDA
// Every compiled configuration, in both dtypes, per-channel and every group size, with stream-K grids of one block
// (every tile in turn: per-channel scales reloaded per tile), 3 blocks (parts of tiles summed by the last block)
// and the plan's, in clusters for a clustered configuration (one cluster, three): each instantiation runs at least
// once on the GPU (configurations from the kernel's own table).
TEST(GpuMarlinGemm, EveryInstantiationRuns) {
  QH_REQUIRE_CUDA();
  const int arch = device_arch();
  for (int config = 0; config < kernels::marlin_gemm_config_count(); ++config) {
    const kernels::MarlinGemmConfig tile = kernels::marlin_gemm_config(config);
    if (!kernels::marlin_gemm_config_runs_on(config, arch)) {
      // The sm_90a configurations off CC 9.0: their refusal is what runs (GpuMarlinGemm.BadInputIsRefusedBeforeLaunch).
      std::cout << "config " << config << " needs CC " << tile.arch << ", this GPU is " << arch << ": not run\n";
      continue;
    }
    for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
      for (int group : {-1, 32, 64, 128}) {
        for (int clusters : {1, 3, 0}) {
          // Three row blocks, the last partial; three column blocks, the last partial (four in a clustered
          // configuration, whose tiles pair up); several stages.
          const std::int64_t n = 64 * tile.n_chunks * (tile.cluster > 1 ? 3 : 2) + 64;
          const Case c{32 * tile.m_tiles + 5, 6 * tile.bk + 64, n, group, group == 64, true, dtype};
          const int blocks = clusters * tile.cluster;
          SCOPED_TRACE("config " + std::to_string(config) + " blocks " + std::to_string(blocks));
          run_case(c, GemmOptions{.config = config, .blocks = blocks}, std::uint64_t(config * 100 + blocks));
        }
      }
    }
  }
}

// One tile (a cluster's row of tiles) shared by 9 blocks (clusters), with bias: 9 parts, summed by the last block to
// arrive (mma.sync kernels) or a ninth by each block (the wgmma kernels' spread sum but the 128 x 256 tile's). A
// sum that loads several parts at a time (the mma.sync kernel's small tiles unroll its part loop by 4) runs both
// its unrolled body and its remainder here for unroll depths 2 and 4; EveryInstantiationRuns's 3 blocks reach the
// remainder alone.
TEST(GpuMarlinGemm, NineBlocksShareOneTile) {
  QH_REQUIRE_CUDA();
  const int arch = device_arch();
  for (int config = 0; config < kernels::marlin_gemm_config_count(); ++config) {
    if (!kernels::marlin_gemm_config_runs_on(config, arch)) continue;
    const kernels::MarlinGemmConfig tile = kernels::marlin_gemm_config(config);
    for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
      // Partial rows and columns; 16 stages, so that every block has a unit or two.
      const Case c{tile.rows() - 3, 16 * tile.bk, 64 * tile.n_chunks * tile.cluster - 32, 128, false, true, dtype};
      SCOPED_TRACE("config " + std::to_string(config));
      run_case(c, GemmOptions{.config = config, .blocks = 9 * tile.cluster}, std::uint64_t(config + 1));
    }
  }
}
#endif

// Stream-K sums a shared tile's parts in block order, whichever block arrives last: the same input gives the same
// bits every time, and the tile counters are left at zero for the next launch (a stale counter would make a later
// launch finish a tile early, with parts missing: the repeated runs and the reference check both catch that). M = 8
// runs the mma.sync kernel; M = 64 on CC 9.0 the wgmma kernel, whose 64-row tiles the 8 blocks cut into equal
// parts, each block summing a share of its tile (spread_arrive).
TEST(GpuMarlinGemm, Deterministic) {
  QH_REQUIRE_CUDA();
  const c10::Device gpu(c10::kCUDA, 0);
  for (const std::int64_t m : {8, 64}) {
    SCOPED_TRACE("m " + std::to_string(m));
    const Case c{m, 4096, 512, 128, false, true, at::kBFloat16};
    const Layer layer = make_layer(c, gpu, 7);
    const at::Tensor x = random_input(c, gpu);
    const at::Tensor first = gemm(x, layer.weights, "test", GemmOptions{.blocks = 8});
    expect_matches_reference(first, x, layer, c);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(gemm(x, layer.weights, "test", GemmOptions{.blocks = 8}).equal(first));
  }
}

// Leading dimensions are kept: (batch, seq, K) -> (batch, seq, N).
TEST(GpuMarlinGemm, KeepsLeadingDimensions) {
  QH_REQUIRE_CUDA();
  const c10::Device gpu(c10::kCUDA, 0);
  const Case c{6, 256, 128, 128, false, false, at::kHalf};
  const Layer layer = make_layer(c, gpu, 3);
  const at::Tensor x = random_input(c, gpu);
  const at::Tensor y = gemm(x.reshape({2, 3, 256}), layer.weights, "test");
  EXPECT_EQ(y.sizes().vec(), (std::vector<std::int64_t>{2, 3, 128}));
  EXPECT_TRUE(y.reshape({6, 128}).equal(gemm(x, layer.weights, "test")));
}

// `call` throws E and its message contains `needle`.
template <class E>
void expect_refused(const std::function<void()>& call, const std::string& needle) {
  const std::string message = testing::error_of<E>(call).what();
  EXPECT_NE(message.find(needle), std::string::npos) << message;
}

// Bad input is refused before any launch with the rule and the numbers, never an out-of-bounds read.
TEST(GpuMarlinGemm, BadInputIsRefusedBeforeLaunch) {
  QH_REQUIRE_CUDA();
  const c10::Device gpu(c10::kCUDA, 0);
  const Case c{4, 256, 128, 128, true, true, at::kHalf};
  const Layer layer = make_layer(c, gpu, 5);
  const at::Tensor x = random_input(c, gpu);
  expect_refused<ShapeError>([&] { gemm(x.narrow(0, 0, 0), layer.weights, "L"); }, "M >= 1");
  expect_refused<ShapeError>([&] { gemm(x.narrow(1, 0, 128), layer.weights, "L"); }, "[..., 256]");
  const at::Tensor wide = random_input({4, 512, 128, 128, true, true, at::kHalf}, gpu);
  expect_refused<ShapeError>([&] { gemm(wide.narrow(1, 0, 256), layer.weights, "L"); }, "contiguous");
  const at::Tensor spare = at::empty({4 * 256 + 1}, x.options());
  const at::Tensor shifted = spare.narrow(0, 1, 4 * 256).view({4, 256}).copy_(x);
  expect_refused<ShapeError>([&] { gemm(shifted, layer.weights, "L"); }, "16-byte aligned");
  expect_refused<ConfigError>([&] { gemm(x.to(at::kFloat), layer.weights, "L"); }, "Half or BFloat16");
  expect_refused<ConfigError>([&] { gemm(x.to(at::kBFloat16), layer.weights, "L"); }, "L.s");
  MarlinWeights no_perm = layer.weights;
  no_perm.perm = at::Tensor();
  expect_refused<ConfigError>([&] { gemm(x, no_perm, "L"); }, "perm");
  MarlinWeights short_b = layer.weights;
  short_b.b = layer.weights.b.narrow(0, 0, 8).contiguous();
  expect_refused<ShapeError>([&] { gemm(x, short_b, "L"); }, "[16, 256]");
  expect_refused<ConfigError>([&] { gemm(x, layer.weights, "L", GemmOptions{.blocks = 100000}); }, "blocks");
  expect_refused<ConfigError>([&] { gemm(x, layer.weights, "L", GemmOptions{.config = 99}); }, "found 99");
#ifdef QH_WITH_CUDA
  for (int config = 0; config < kernels::marlin_gemm_config_count(); ++config) {
    if (!kernels::marlin_gemm_config_runs_on(config, device_arch())) {  // the sm_90a ones off CC 9.0
      expect_refused<ConfigError>([&] { gemm(x, layer.weights, "L", GemmOptions{.config = config}); }, "needs 90");
    } else if (kernels::marlin_gemm_config(config).cluster > 1) {
      // One 128-column tile cannot pair up; with two, a grid of whole clusters only.
      expect_refused<ConfigError>([&] { gemm(x, layer.weights, "L", GemmOptions{.config = config}); },
                                  "out_features = 128");
      const Case two_tiles{4, 256, 256, 128, false, false, at::kHalf};
      const Layer paired = make_layer(two_tiles, gpu, 6);
      const at::Tensor x2 = random_input(two_tiles, gpu);
      expect_refused<ConfigError>([&] { gemm(x2, paired.weights, "L", GemmOptions{.config = config, .blocks = 3}); },
                                  "blocks a multiple of 2");
    }
  }
#endif
  MarlinWeights short_bias = layer.weights;
  short_bias.bias = layer.weights.bias.narrow(0, 0, 64);
  expect_refused<ShapeError>([&] { gemm(x, short_bias, "L"); }, "[128] on cuda:0");
  MarlinWeights stray_perm = layer.weights;
  stray_perm.spec.act_order = false;
  expect_refused<ConfigError>([&] { gemm(x, stray_perm, "L"); }, "found perm present");
  // Inf in the input: reported, never silently turned into Inf/NaN outputs.
  at::Tensor inf = x.clone();
  inf.index_put_({1, 7}, std::numeric_limits<float>::infinity());
  expect_refused<NumericError>([&] { gemm(inf, layer.weights, "L"); }, "1 of 1024 values");
}

// fp16 overflow: when |x W| exceeds 65504 the float64 reference rounded to fp16 is Inf as well; the GEMM reports
// the overflow by layer instead of returning Inf silently, and bf16 holds the same product.
TEST(GpuMarlinGemm, Fp16OverflowIsReported) {
  QH_REQUIRE_CUDA();
  const c10::Device gpu(c10::kCUDA, 0);
  const Case c{2, 256, 64, -1, false, false, at::kHalf};
  const Layer layer = make_layer(c, gpu, 9);
  const at::Tensor x = at::full({2, 256}, 60000.0, at::TensorOptions().dtype(at::kHalf).device(gpu));
  const at::Tensor ref = x.to(at::kDouble).matmul(layer.w).to(at::kHalf);
  ASSERT_FALSE(at::isfinite(ref).all().item<bool>()) << "the case must overflow fp16 in the reference too";
  expect_refused<NumericError>([&] { gemm(x, layer.weights, "L"); }, "overflow fp16");
}

// The whole path a user takes: a GPTQ checkpoint (with biases, act-order and a padded MLP: intermediate 96 gives
// N = 96 and K = 96 with group 64) -> qharness convert --to marlin -> load on the GPU -> every MarlinLinear's
// forward runs the GEMM and matches its own float64 reference within the derived bound; the model's forward runs
// (AutoGPTQ #551: a converted layer whose bias stayed on meta; here the layers are used, not only inspected).
TEST(GpuMarlinGemm, ConvertedCheckpointForwardUsesTheGemm) {
  QH_REQUIRE_CUDA();
  const c10::Device gpu(c10::kCUDA, 0);
  for (const bool desc_act : {false, true}) {
    SCOPED_TRACE(desc_act ? "act-order" : "no act-order");
    const auto qc = testing::quantize_config(4, 64, true, desc_act);
    format::ModelConfig config = model::tiny_llama_config(true, true, false);
    config.intermediate_size = 96;
    model::Model gptq = testing::packed_model(config, qc);
    testing::TempDir gptq_dir, marlin_dir;
    checkpoint::save_checkpoint(gptq, gptq_dir.path(), &qc);
    cli::ConvertOptions convert;
    convert.in_dir = gptq_dir.path();
    convert.out_dir = marlin_dir.path();
    ASSERT_EQ(cli::convert_command(convert), 0);
    checkpoint::LoadOptions load;
    load.device = gpu;
    auto loaded = checkpoint::load_checkpoint(marlin_dir.path(), load);
    int layers = 0;
    for (const auto& [name, module] : model::named_modules(*loaded.model.root)) {
      const auto* layer = dynamic_cast<const MarlinLinear*>(module);
      if (layer == nullptr) continue;
      ++layers;
      const MarlinSpec& spec = layer->spec();
      const Case c{5, spec.in_features, spec.out_features, spec.group_size, spec.act_order,
                   layer->slot("bias") != nullptr, layer->tensor("s").scalar_type()};
      Layer reference;
      reference.w = layer->dequantize().to(at::kDouble).to(gpu);
      if (c.bias) reference.weights.bias = layer->tensor("bias");
      const at::Tensor x = random_input(c, gpu);
      SCOPED_TRACE(name);
      expect_matches_reference(layer->forward(x), x, reference, c);
    }
    EXPECT_EQ(layers, 7 * config.num_layers);
    const at::Tensor logits = loaded.model.forward(testing::token_batch(config.vocab_size, 3).to(gpu));
    EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
  }
}

#ifdef QH_WITH_CUDA
// The plan's grid, on the Llama shapes at M = 1 .. 1024 and on an H100/H200-sized GPU (132 SMs; without a
// GPU the occupancy query falls back to one block per SM): the configuration the H200 timings chose for each m and
// shape, within the kernel's limits (1 .. max_blocks, at most 2 blocks per SM), at least min_units units per block
// where the shape has them, and when it gives a tile several blocks it gives every tile the same number (ranges on
// tile boundaries: the rule the H200 timings chose) unless that leaves the SMs unevenly loaded.
TEST(MarlinGemm, PlanCutsEveryTileAlikeOrStreamsWithinTheLimits) {
  constexpr int kSms = 132;
  const std::int64_t shapes[][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {8192, 8192}, {8192, 28672},
                                    {28672, 8192}, {320, 2736}, {28672, 4160}};
  for (const auto& [k, n] : shapes) {
    for (std::int64_t m : {1, 8, 9, 16, 32, 64, 128, 129, 256, 1024}) {
      SCOPED_TRACE("M " + std::to_string(m) + " K " + std::to_string(k) + " N " + std::to_string(n));
      for (int arch : {80, 90}) {
        SCOPED_TRACE("CC " + std::to_string(arch));
        const kernels::MarlinGemmPlan plan = kernels::marlin_gemm_plan(m, n, k, kernels::DType::F16, kSms, arch);
        const std::int64_t tiles = kernels::marlin_gemm_tiles(plan.config, m, n);
        const std::int64_t units = tiles * kernels::marlin_gemm_stages(plan.config, k);
        // m <= 64 on CC 9.0: 64 x 256 (configuration 3) on the two largest shapes only, where the H200 timed it
        // faster than 64 x 128 at two blocks per SM (configuration 6).
        const int m64 = k * n >= std::int64_t(8192) * 28672 ? 3 : 6;
        // Larger m: the 256 x 128 tile, in CTA pairs (configuration 7) where there are at least 64 such tiles (the
        // H200 timed pairs slower on 32) and the 128-column tiles pair up, else alone (5).
        const std::int64_t column_tiles = (n + 127) / 128;
        const int tall = (m + 255) / 256 * column_tiles >= 64 && column_tiles % 2 == 0 ? 7 : 5;
        // m <= 32: the 16- and 32-row mma.sync tiles, on CC 9.0 fed by TMA (configurations 8, 9); m <= 8 the
        // narrow 8-row tile (10 fed by TMA, 11 by cp.async), on CC 9.0 8 x 256 (12) where the shape has at least
        // 12 of its 256-column, 128-input units per SM (8192 x 8192 15.5, 28672 x 4160 29, the two largest 54; not
        // 4096 x 11008 and 11008 x 4096, 10.4).
        const bool wide = (n + 255) / 256 * ((k + 127) / 128) >= 12 * kSms;
        const int narrow = arch != 90 ? 11 : wide ? 12 : 10;
        const int small = m <= 8 ? narrow : (m <= 16 ? 0 : 1) + (arch == 90 ? 8 : 0);
        EXPECT_EQ(plan.config, m <= 32 ? small : arch != 90 ? 2 : m <= 64 ? m64 : m <= 128 ? 4 : tall);
        EXPECT_TRUE(kernels::marlin_gemm_config_runs_on(plan.config, arch));
        EXPECT_GE(plan.blocks, 1);
        EXPECT_EQ(plan.blocks % kernels::marlin_gemm_config(plan.config).cluster, 0);
        EXPECT_LE(plan.blocks,
                  std::min<std::int64_t>(2 * kSms, kernels::marlin_gemm_max_blocks(plan.config, m, n, k)));
        const int min_units = kernels::marlin_gemm_config(plan.config).min_units;
        if (units >= min_units) {
          EXPECT_GE(units / plan.blocks, min_units);
        }
        // Several blocks per tile: every tile cut alike, unless that would load the busiest SM (ceil(blocks / SMs)
        // ranges) at least 10 % more than the stream-K grid the plan took (QH_STREAMK_MIN_GAIN_PCT).
        if (plan.blocks >= 2 * tiles && plan.blocks % tiles != 0) {
          auto busiest = [&](std::int64_t blocks) {
            return (blocks + kSms - 1) / kSms * ((units + blocks - 1) / blocks);
          };
          EXPECT_GE(busiest(plan.blocks / tiles * tiles) * 100, busiest(plan.blocks) * 110);
        }
        // A larger than the L2 (here M = 1024 with 28672 inputs) and more tiles than blocks: (about) whole tiles
        // per block, so that the blocks stay on the same band of A: the fewest blocks that leave none more than
        // ceil(tiles / blocks) tiles (stream-K over every resident block would use more).
        if (m * k * 2 >= (std::int64_t(32) << 20) && tiles > plan.blocks) {
          const std::int64_t per_block = (tiles + plan.blocks - 1) / plan.blocks;
          EXPECT_EQ((tiles + per_block - 1) / per_block, plan.blocks);
        }
      }
    }
  }
  // A GPU of one SM still gets a plan of whole clusters (resident counted in clusters: at least one).
  for (const std::int64_t m : {256, 1024}) {
    const kernels::MarlinGemmPlan plan = kernels::marlin_gemm_plan(m, 8192, 8192, kernels::DType::F16, 1, 90);
    EXPECT_EQ(plan.config, 7);
    EXPECT_GE(plan.blocks, 2);
    EXPECT_EQ(plan.blocks % 2, 0);
  }
}
#endif

// The CPU reference of the GEMM (what the torch op's CPU kernel runs) against the same float64 reference and bound
// as the kernel: row counts of each tile, groups, act-order, bias, both dtypes and a padded shape.
TEST(MarlinGemm, CpuReferenceMatchesFloat64) {
  const c10::Device cpu(c10::kCPU);
  for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
    for (const Case& shape : {Case{1, 256, 128, 128}, Case{17, 320, 2736 / 16, 64}, Case{33, 40, 80, -1}}) {
      for (bool act_order : {false, true}) {
        Case c = shape;
        c.act_order = act_order;
        c.bias = act_order;
        c.dtype = dtype;
        const Layer layer = make_layer(c, cpu, 11);
        const at::Tensor x = random_input(c, cpu);
        expect_matches_reference(gemm(x, layer.weights, "test"), x, layer, c);
      }
    }
  }
}

// A perm that is not a permutation would read some inputs twice and others never: refused by the CPU path (the
// checkpoint verifier refuses it before the GPU path sees it).
TEST(MarlinGemm, CpuReferenceRefusesAPermThatIsNotAPermutation) {
  const Case c{4, 64, 64, 32, true, false, at::kHalf};
  Layer layer = make_layer(c, c10::Device(c10::kCPU), 1);
  layer.weights.perm = at::zeros({64}, at::kInt);
  expect_refused<ConfigError>([&] { gemm(random_input(c, c10::Device(c10::kCPU)), layer.weights, "L"); },
                              "permutation");
}

TEST(MarlinGemm, UnsupportedGroupSizeIsRefused) {
  Case c{4, 64, 64, 16, false, false, at::kHalf};
  const Layer layer = make_layer(c, c10::Device(c10::kCPU), 1);
  expect_refused<ConfigError>([&] { gemm(random_input(c, c10::Device(c10::kCPU)), layer.weights, "L"); },
                              "group_size = 16");
}

#ifdef QH_WITH_CUDA
// The launchers' own refusals, which the library's callers never reach (they validate with messages first): each
// rule broken alone returns cudaErrorInvalidValue before any CUDA call, so this runs without a GPU. The pointers are
// addresses nothing dereferences (the launch is refused first); the unbroken arguments are launched only where no
// GPU exists (they must then fail for want of a device, not as invalid: the refusals are not blanket ones).
TEST(MarlinGemm, LaunchersRefuseArgumentsOutsideTheirRules) {
  auto at_address = [](std::uintptr_t address) { return reinterpret_cast<void*>(address); };
  kernels::MarlinGemmArgs valid;
  valid.a = at_address(0x1000);
  valid.b = static_cast<const std::uint32_t*>(at_address(0x2000));
  valid.s = at_address(0x3000);
  valid.c = at_address(0x4000);
  valid.workspace = static_cast<float*>(at_address(0x5000));
  valid.counters = static_cast<unsigned*>(at_address(0x6000));
  valid.m = 16;
  valid.k = valid.k_pad = 256;
  valid.n = valid.n_pad = 128;
  valid.group_size = 128;
  valid.plan = kernels::MarlinGemmPlan{0, 1};
  int paired = 0;  // the clustered configuration (CTA pairs)
  while (paired < kernels::marlin_gemm_config_count() && kernels::marlin_gemm_config(paired).cluster != 2) ++paired;
  ASSERT_LT(paired, kernels::marlin_gemm_config_count());
  using Break = std::pair<const char*, std::function<void(kernels::MarlinGemmArgs&)>>;
  const Break breaks[] = {
      {"null a", [](auto& x) { x.a = nullptr; }},
      {"null b", [](auto& x) { x.b = nullptr; }},
      {"null s", [](auto& x) { x.s = nullptr; }},
      {"null c", [](auto& x) { x.c = nullptr; }},
      {"null workspace", [](auto& x) { x.workspace = nullptr; }},
      {"null counters", [](auto& x) { x.counters = nullptr; }},
      {"a not 16-byte aligned", [&](auto& x) { x.a = at_address(0x1008); }},
      {"k not a multiple of 8", [](auto& x) { x.k = 252; }},
      {"n past n_pad", [](auto& x) { x.n = 192; }},
      {"group size 48", [](auto& x) { x.group_size = 48; }},
      {"float32", [](auto& x) { x.dtype = kernels::DType::F32; }},
      {"no such configuration", [](auto& x) { x.plan.config = kernels::marlin_gemm_config_count(); }},
      {"zero blocks", [](auto& x) { x.plan.blocks = 0; }},
      {"more blocks than units", [](auto& x) { x.plan.blocks = 1 << 20; }},
      // The clustered configuration: n = 128 is one column tile, which does not pair up; with two, a grid of half a
      // cluster.
      {"an odd count of column tiles in pairs", [&](auto& x) { x.plan = {paired, 2}; }},
      {"half a cluster",
       [&](auto& x) {
         x.n = x.n_pad = 256;
         x.plan = {paired, 1};
       }},
  };
  for (const auto& [what, breaking] : breaks) {
    kernels::MarlinGemmArgs args = valid;
    breaking(args);
    EXPECT_EQ(kernels::launch_marlin_gemm(args, nullptr), cudaErrorInvalidValue) << what;
  }
  const auto* qweight = static_cast<const std::uint32_t*>(at_address(0x1000));
  auto* out = static_cast<std::uint32_t*>(at_address(0x2000));
  EXPECT_EQ(kernels::launch_marlin_repack(nullptr, nullptr, 256, 128, out, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kernels::launch_marlin_repack(qweight, nullptr, 256, 128, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kernels::launch_marlin_repack(qweight, nullptr, 256, 128, out + 1, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kernels::launch_marlin_repack(qweight, nullptr, 248, 128, out, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kernels::launch_marlin_repack(qweight, nullptr, 256, 96, out, nullptr), cudaErrorInvalidValue);
  if (!kernels::cuda_unavailable_reason().empty()) {
    EXPECT_NE(kernels::launch_marlin_gemm(valid, nullptr), cudaErrorInvalidValue);
    EXPECT_NE(kernels::launch_marlin_repack(qweight, nullptr, 256, 128, out, nullptr), cudaErrorInvalidValue);
  }
}
#endif

}  // namespace
}  // namespace qh::marlin
