// The Marlin layout (impl/marlin): the permutation tables against FORMATS.md 3.1's listed entries, the packed words
// against AutoGPTQ's gptq_repack description (FORMATS.md 3.2, which gathers by tile coordinates and never uses the
// 1024-entry table: an independent oracle), pack/unpack and scale permutations as inverses, and the CUDA repack
// (with and without an act-order permutation) bit for bit against the CPU reference; and B and s as AutoGPTQ 0.7.1's
// own Marlin QuantLinear.pack wrote them (fixtures/marlin/, made by fixtures/gen_marlin_interop.py); and the
// zero-padding of shapes that do not tile (docs/marlin.md), with what is still refused.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <numeric>
#include <set>

#include "conformance/gpu_testing.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/core/errors.h"
#include "impl/format/safetensors.h"
#include "impl/format/gptq_pack.h"
#include "impl/marlin/layout.h"
#include "impl/marlin/marlin_linear.h"
#include "impl/marlin/repack.h"
#include "impl/quant_linear/packing.h"
#include "impl/quant_linear/quant_linear.h"

namespace qh::marlin {
namespace {

at::Tensor random_codes(std::int64_t k, std::int64_t n, std::uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(16, {k, n}, at::kInt);
}

template <std::size_t N>
bool is_permutation(const std::array<int, N>& perm) {
  std::set<int> seen(perm.begin(), perm.end());
  return seen.size() == N && *seen.begin() == 0 && *seen.rbegin() == int(N) - 1;
}

// FORMATS.md 3.1 lists the first entries of each table.
TEST(MarlinLayout, PermutationTablesMatchTheFormat) {
  const std::vector<int> first = {0, 128, 8, 136, 16, 144, 24, 152, 256, 384, 264, 392, 272, 400, 280, 408, 512, 640};
  EXPECT_EQ(std::vector<int>(weight_perm().begin(), weight_perm().begin() + 18), first);
  EXPECT_TRUE(is_permutation(weight_perm()));
  EXPECT_EQ(std::vector<int>(scale_perm().begin(), scale_perm().begin() + 10),
            (std::vector<int>{0, 8, 16, 24, 32, 40, 48, 56, 1, 9}));
  EXPECT_TRUE(is_permutation(scale_perm()));
  EXPECT_EQ(std::vector<int>(scale_perm_single().begin(), scale_perm_single().begin() + 12),
            (std::vector<int>{0, 1, 8, 9, 16, 17, 24, 25, 2, 3, 10, 11}));
  EXPECT_TRUE(is_permutation(scale_perm_single()));
}

// AutoGPTQ's gptq_repack (FORMATS.md 3.2): per 16 x 64 block (bx, by), thread t (srow = (t % 4) * 2, scol = t / 4)
// packs, for each of the four 16x16 tiles, the codes at (srow, scol), (srow+8, scol), (srow, scol+8),
// (srow+8, scol+8), (srow+1, scol), (srow+9, scol), (srow+1, scol+8), (srow+9, scol+8) into
// out[bx * 2N + by * 128 + t * 4 + tile], lowest nibble first.
at::Tensor repack_by_description(const at::Tensor& codes) {
  const std::int64_t k = codes.size(0), n = codes.size(1);
  const auto c = codes.accessor<int, 2>();
  std::vector<std::uint32_t> out(std::size_t(k / 16 * 2 * n));
  const int dr[8] = {0, 8, 0, 8, 1, 9, 1, 9}, dc[8] = {0, 0, 8, 8, 0, 0, 8, 8};
  for (std::int64_t bx = 0; bx < k / 16; ++bx) {
    for (std::int64_t by = 0; by < n / 64; ++by) {
      for (int t = 0; t < 32; ++t) {
        for (int tile = 0; tile < 4; ++tile) {
          std::uint32_t word = 0;
          for (int i = 0; i < 8; ++i) {
            const std::int64_t row = bx * 16 + (t % 4) * 2 + dr[i], col = by * 64 + tile * 16 + t / 4 + dc[i];
            word |= std::uint32_t(c[row][col]) << (4 * i);
          }
          out[std::size_t(bx * 2 * n + by * 128 + t * 4 + tile)] = word;
        }
      }
    }
  }
  return at::from_blob(out.data(), {k / 16, 2 * n}, at::kInt).clone();
}

TEST(MarlinLayout, PackEqualsAutoGptqRepackDescription) {
  for (auto [k, n] : {std::pair<std::int64_t, std::int64_t>{16, 64}, {128, 256}, {256, 512}, {384, 320}}) {
    const at::Tensor codes = random_codes(k, n, std::uint64_t(k * n));
    EXPECT_TRUE(pack_weights(codes, "layer").equal(repack_by_description(codes))) << k << "x" << n;
  }
}

TEST(MarlinLayout, UnpackInvertsPack) {
  const at::Tensor codes = random_codes(256, 512, 5);
  const at::Tensor b = pack_weights(codes, "layer");
  EXPECT_EQ(b.sizes().vec(), (std::vector<std::int64_t>{16, 1024}));
  EXPECT_TRUE(unpack_weights(b, 256, 512, "layer").equal(codes));
}

// Layer.pack step 3: grouped scales by blocks of 64, per-channel ones by blocks of 32; both invertible.
TEST(MarlinLayout, ScalePermutations) {
  const at::Tensor grouped = at::arange(2 * 256, at::kFloat).reshape({2, 256}).to(at::kHalf);
  const at::Tensor s = permute_scales(grouped, true, "layer");
  EXPECT_EQ(s[0][1].item<float>(), 8.0f);   // scale_perm[1] = 8
  EXPECT_EQ(s[1][65].item<float>(), 256.0f + 64 + 8);  // second block of the second row
  EXPECT_TRUE(unpermute_scales(s, true, "layer").equal(grouped));
  const at::Tensor channel = at::arange(256, at::kFloat).reshape({1, 256}).to(at::kHalf);
  const at::Tensor s1 = permute_scales(channel, false, "layer");
  EXPECT_EQ(s1[0][2].item<float>(), 8.0f);  // scale_perm_single[2] = 8
  EXPECT_TRUE(unpermute_scales(s1, false, "layer").equal(channel));
}

// Shapes Marlin cannot tile are refused with the rule and the numbers; so are codes that are not 4-bit.
TEST(MarlinLayout, RefusesUntileableShapesAndWideCodes) {
  try {
    pack_weights(at::zeros({128, 96}, at::kInt), "model.layers.0.mlp.down_proj");
    FAIL() << "N = 96 accepted";
  } catch (const ShapeError& e) {
    EXPECT_EQ(e.where().layer, "model.layers.0.mlp.down_proj");
    EXPECT_NE(std::string(e.what()).find("N = 96"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pack_weights(at::full({16, 64}, 16, at::kInt), "layer"), NumericError);
  EXPECT_THROW(permute_scales(at::zeros({2, 96}, at::kHalf), true, "layer"), ShapeError);
}

// What Marlin cannot hold is refused with the rule and the numbers: asymmetric zero points, 8 bits, a group size
// outside -1/32/64/128. (An N that does not tile is padded now: PadsNToWholeTiles.)
TEST(MarlinLayout, ConversionRefusalsNameTheRule) {
  auto layer = [](int bits, int group, bool sym, std::int64_t n) {
    return quant_linear::QuantLinear(quant_linear::QuantSpec{256, n, bits, group, sym, false,
                                                             quant_linear::ZeroFormat::V2},
                                     false, at::TensorOptions().dtype(at::kHalf));
  };
  auto message = [](const quant_linear::QuantLinear& l) {
    try {
      to_marlin(l, c10::kCPU, "m.q");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(layer(4, 128, false, 128)).find("sym: false"), std::string::npos);
  EXPECT_NE(message(layer(8, 128, true, 128)).find("bits = 8"), std::string::npos);
  EXPECT_NE(message(layer(4, 16, true, 128)).find("group_size = 16"),
            std::string::npos);
}

// The CPU path of repack_gptq_qweight (unpack the GPTQ nibbles, pack) equals packing the codes directly, and with an
// act-order permutation equals packing the permuted rows.
TEST(MarlinLayout, CpuRepackFromGptqQweight) {
  const std::int64_t k = 256, n = 256;
  const at::Tensor codes = random_codes(k, n, 9);
  const quant_linear::QuantSpec spec{k, n, 4, -1, true, false, quant_linear::ZeroFormat::V1};
  const at::Tensor qweight =
      quant_linear::pack(codes.t(), at::full({n, 1}, 8), at::ones({n, 1}), at::zeros({k}, at::kInt), spec, at::kHalf,
                         "layer").qweight;
  EXPECT_TRUE(repack_gptq_qweight(qweight, at::Tensor(), k, n, "layer").equal(pack_weights(codes, "layer")));
  const at::Tensor perm = at::randperm(k, at::kLong).to(at::kInt);
  EXPECT_TRUE(repack_gptq_qweight(qweight, perm, k, n, "layer")
                  .equal(pack_weights(codes.index_select(0, perm.to(at::kLong)), "layer")));
}

// AutoGPTQ's own pack() (the IST-DASLab Layer.pack code): our B from its codes and our s from its scales are its
// bytes, for per-channel and grouped scales (one, two and three tile rows of groups).
TEST(MarlinLayout, PackEqualsAutoGptqMarlinPack) {
  std::vector<std::string> paths;
  for (const auto& e : std::filesystem::directory_iterator(std::string(QH_SOURCE_DIR) + "/fixtures/marlin/auto-gptq")) {
    paths.push_back(e.path().string());
  }
  ASSERT_EQ(paths.size(), 6u);
  for (const auto& path : paths) {
    SCOPED_TRACE(path);
    const auto t = checkpoint::load_all(path, c10::kCPU);
    const std::int64_t k = t.at("input.codes").size(0), n = t.at("input.codes").size(1);
    const at::Tensor scales = t.at("input.scales").t();  // pack() takes (N, groups); Marlin stores (groups, N)
    EXPECT_TRUE(pack_weights(t.at("input.codes").to(at::kInt), "layer").equal(t.at("layer.B")));
    EXPECT_TRUE(unpack_weights(t.at("layer.B"), k, n, "layer").equal(t.at("input.codes").to(at::kInt)));
    EXPECT_TRUE(permute_scales(scales, scales.size(0) > 1, "layer").equal(t.at("layer.s")));
  }
}

// Zero-padding (docs/marlin.md): the testbed is one 4-bit symmetric GPTQ layer with seeded random codes, scales
// and bias. QuantLinear itself holds only K and N that are multiples of 32 (AutoGPTQ's K // 32 * b rows), so the
// GPTQ-sourced cases use such shapes that Marlin still cannot tile.
struct PaddingCase {
  std::int64_t k, n;
  int group_size;
  bool act_order = false;
  bool bias = true;
};

// GPTQ's act-order g_idx without static_groups (FORMATS.md 1.6): the column at activation-order position i is in
// group i / G, so every group holds G columns and the last the remainder of K.
at::Tensor act_order_g_idx(std::int64_t k, std::int64_t group) {
  const at::Tensor order = at::randperm(k, at::kLong);
  at::Tensor g_idx = at::empty({k}, at::kLong);
  g_idx.index_copy_(0, order, at::arange(k, at::kLong).div(group, "floor"));
  return g_idx.to(at::kInt);
}

std::unique_ptr<quant_linear::QuantLinear> gptq_layer(const PaddingCase& c, at::Tensor g_idx = {}) {
  const quant_linear::QuantSpec spec{c.k, c.n, 4, c.group_size, true, c.act_order, quant_linear::ZeroFormat::V1};
  at::manual_seed(std::uint64_t(c.k * 1000 + c.n));
  const std::int64_t groups = spec.groups(), group = spec.group_length();
  if (!g_idx.defined()) {
    g_idx = c.act_order ? act_order_g_idx(c.k, group) : at::arange(c.k, at::kLong).div(group, "floor").to(at::kInt);
  }
  auto layer = std::make_unique<quant_linear::QuantLinear>(spec, c.bias, at::TensorOptions().dtype(at::kHalf));
  layer->set_packed(quant_linear::pack(at::randint(16, {c.n, c.k}, at::kInt), at::full({c.n, groups}, 8),
                                       at::rand({c.n, groups}) + 0.01, g_idx, spec, at::kHalf, "layer"));
  if (c.bias) layer->slot("bias")->value = at::randn({c.n}).to(at::kHalf);
  return layer;
}

// Converts `c` on the CPU and checks what padding promises: W (K, N) is the GPTQ layer's bit for bit, B and s have
// the padded shapes, every padded row and column of B unpacks to code 8 (weight 0), every padded column of s is 0,
// perm and bias keep K and N. Returns the spec so that each case can state its padded extents.
MarlinSpec expect_padded_conversion(const PaddingCase& c) {
  const auto source = gptq_layer(c);
  const auto marlin = to_marlin(*source, c10::kCPU, "layer");
  const MarlinSpec spec = marlin->spec();
  const std::int64_t kp = spec.k_padded(), np = spec.n_padded();
  EXPECT_EQ(marlin->tensor("B").sizes().vec(), (std::vector<std::int64_t>{kp / 16, 2 * np}));
  EXPECT_EQ(marlin->tensor("s").sizes().vec(), (std::vector<std::int64_t>{spec.groups(), np}));
  EXPECT_TRUE(marlin->dequantize().equal(source->dequantize()));
  const at::Tensor codes = unpack_weights(marlin->tensor("B"), kp, np, "layer");
  EXPECT_TRUE(codes.narrow(0, c.k, kp - c.k).eq(8).all().item<bool>()) << "padded rows";
  EXPECT_TRUE(codes.narrow(1, c.n, np - c.n).eq(8).all().item<bool>()) << "padded columns";
  const at::Tensor s = unpermute_scales(marlin->tensor("s"), spec.group_size != -1, "layer");
  EXPECT_TRUE(s.narrow(1, c.n, np - c.n).eq(0).all().item<bool>()) << "padded scale columns";
  EXPECT_EQ(marlin->slot("perm") != nullptr, c.act_order);
  if (c.act_order) {
    EXPECT_EQ(marlin->tensor("perm").numel(), c.k);
  }
  if (c.bias) {
    EXPECT_TRUE(marlin->tensor("bias").equal(source->tensor("bias")));  // (N,), plain order, dtype kept
  } else {
    EXPECT_EQ(marlin->slot("bias"), nullptr);
  }
  return spec;
}

// Pins vLLM's "Weight output_size_per_partition = 2736 is not divisible by min_thread_n = 64" (2736 = 42 * 64 + 48):
// N = 96 and N = 160 are padded to 128 and 192 columns of code 8 with scale 0.
TEST(MarlinLayout, PadsNToWholeTiles) {
  for (const int group : {-1, 64}) {
    SCOPED_TRACE(group);
    EXPECT_EQ(expect_padded_conversion({128, 96, group}).n_padded(), 128);
    EXPECT_EQ(expect_padded_conversion({128, 160, group, false, false}).n_padded(), 192);
  }
}

// Pins tensor-parallel K slices: K = 320 inputs with group 128 (a row-parallel slice) has ceil(320 / 128) = 3 scale
// rows, the last covering 64 inputs; B is padded to 384 rows so that every scale row covers 128 of them. K = 96 with
// group 64 is the same on a smaller scale.
TEST(MarlinLayout, PadsAPartialLastGroup) {
  const MarlinSpec slice = expect_padded_conversion({320, 64, 128});
  EXPECT_EQ(slice.groups(), 3);
  EXPECT_EQ(slice.k_padded(), 384);
  const MarlinSpec small = expect_padded_conversion({96, 96, 64});
  EXPECT_EQ(small.groups(), 2);
  EXPECT_EQ(small.k_padded(), 128);
  EXPECT_EQ(small.n_padded(), 128);
}

// Pins act-order checkpoints whose K is not a multiple of the group size (GPTQ's g_idx then puts the remainder in
// the last group, in activation order): perm (K,) orders B's first K rows, the padded rows follow, and W comes back
// in the original input order.
TEST(MarlinLayout, PadsActOrderWithAPartialLastGroup) {
  const MarlinSpec spec = expect_padded_conversion({160, 96, 64, true});
  EXPECT_EQ(spec.groups(), 3);
  EXPECT_EQ(spec.k_padded(), 192);
  EXPECT_EQ(spec.n_padded(), 128);
  expect_padded_conversion({320, 64, 128, true, false});
}

// A group size of K or more is one scale row, i.e. per-channel (as vLLM's marlin_permute_scales treats it): K is
// padded to 16, not to the group size.
TEST(MarlinLayout, OneGroupIsPerChannel) {
  const MarlinSpec spec = expect_padded_conversion({96, 96, 128});
  EXPECT_EQ(spec.group_size, -1);
  EXPECT_EQ(spec.k_padded(), 96);
}

// Pins per-channel layers whose K is a multiple of 8 but not of 16 (4-bit GPTQ's (K/8, N) qweight allows it; Marlin's
// 16-row tiles do not). This builds the padded Marlin buffers from codes directly, independent of conversion:
// K = 40, N = 80 stored as 48 x 128, and dequantize() slices W (40, 80) back out.
TEST(MarlinLayout, DequantizeSlicesPerChannelPadding) {
  const MarlinSpec spec{40, 80, -1, false};
  EXPECT_NO_THROW(spec.validate("layer"));
  ASSERT_EQ(spec.k_padded(), 48);
  ASSERT_EQ(spec.n_padded(), 128);
  const at::Tensor codes = random_codes(40, 80, 11);
  const at::Tensor scales = (at::rand({1, 80}) + 0.01).to(at::kHalf);
  at::Tensor padded_codes = at::full({48, 128}, 8, at::kInt);
  padded_codes.narrow(0, 0, 40).narrow(1, 0, 80).copy_(codes);
  MarlinLinear layer(spec, false, at::TensorOptions().dtype(at::kHalf));
  EXPECT_EQ(layer.tensor("B").sizes().vec(), (std::vector<std::int64_t>{3, 256}));
  EXPECT_EQ(layer.tensor("s").sizes().vec(), (std::vector<std::int64_t>{1, 128}));
  layer.slot("B")->value = pack_weights(padded_codes, "layer");
  layer.slot("s")->value = permute_scales(at::constant_pad_nd(scales, {0, 48}), false, "layer");
  const at::Tensor expected = ((codes.to(at::kFloat) - 8) * scales.to(at::kFloat)).to(at::kHalf);
  EXPECT_TRUE(layer.dequantize().equal(expected));
}

// Padding fixes tiling, not packing: K = 324 has no 4-bit GPTQ qweight (8 inputs per int32) and is refused with the
// rule and the numbers, as a ShapeError naming the layer.
TEST(MarlinLayout, RefusesKThatIsNotAMultipleOf8) {
  const quant_linear::QuantLinear source(quant_linear::QuantSpec{324, 128, 4, -1, true, false,
                                                                 quant_linear::ZeroFormat::V1},
                                         false, at::TensorOptions().dtype(at::kHalf));
  try {
    to_marlin(source, c10::kCPU, "model.layers.3.mlp.down_proj");
    FAIL() << "K = 324 accepted";
  } catch (const ShapeError& e) {
    EXPECT_EQ(e.where().layer, "model.layers.3.mlp.down_proj");
    EXPECT_NE(std::string(e.what()).find("K = 324 is not a multiple of 8"), std::string::npos) << e.what();
  }
  const MarlinSpec grouped{324, 128, 128, false};
  EXPECT_THROW(grouped.validate("layer"), ShapeError);
}

// Act-order groups must be G columns each but the last; any other count would put rows of B under the wrong scale
// row. Pins g_idx from static_groups-style or damaged checkpoints: counts 120/136 with group 128, and a partial group
// that is not the last (32/64/64 for K = 160, group 64). Refused as a ConfigError naming g_idx and the group.
TEST(MarlinLayout, RefusesActOrderGroupsOfOtherSizes) {
  auto refusal = [](const PaddingCase& c, const at::Tensor& g_idx) {
    try {
      to_marlin(*gptq_layer(c, g_idx), c10::kCPU, "m.o");
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.where().tensor, "m.o.g_idx");
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  const at::Tensor uneven = at::cat({at::zeros({120}, at::kInt), at::ones({136}, at::kInt)});
  const std::string m1 = refusal({256, 64, 128, true}, uneven.index_select(0, at::randperm(256, at::kLong)));
  EXPECT_NE(m1.find("group 0 holds 120 columns"), std::string::npos) << m1;
  EXPECT_NE(m1.find("2 groups of 128 columns, the last of 128"), std::string::npos) << m1;
  const at::Tensor short_first = at::cat({at::zeros({32}, at::kInt), at::full({64}, 1, at::kInt),
                                          at::full({64}, 2, at::kInt)});
  const std::string m2 = refusal({160, 64, 64, true}, short_first);
  EXPECT_NE(m2.find("group 0 holds 32 columns"), std::string::npos) << m2;
  EXPECT_NE(m2.find("3 groups of 64 columns, the last of 32"), std::string::npos) << m2;
}

// The CUDA repack kernel equals the CPU reference bit for bit, with and without act-order, on shapes from one tile
// row to a real layer's.
TEST(GpuMarlinLayout, RepackKernelMatchesReference) {
  QH_REQUIRE_CUDA();
  const c10::Device gpu(c10::kCUDA, 0);
  for (auto [k, n] : {std::pair<std::int64_t, std::int64_t>{16, 64}, {128, 256}, {4096, 4096}, {11008, 4096}}) {
    SCOPED_TRACE(std::to_string(k) + "x" + std::to_string(n));
    at::manual_seed(k + n);
    const at::Tensor qweight = at::randint(-(1LL << 31), (1LL << 31) - 1, {k / 8, n}, at::kLong).to(at::kInt);
    const at::Tensor reference = repack_gptq_qweight(qweight, at::Tensor(), k, n, "layer");
    EXPECT_TRUE(repack_gptq_qweight(qweight.to(gpu), at::Tensor(), k, n, "layer").cpu().equal(reference));
    const at::Tensor perm = at::randperm(k, at::kLong).to(at::kInt);
    EXPECT_TRUE(repack_gptq_qweight(qweight.to(gpu), perm.to(gpu), k, n, "layer").cpu().equal(
        repack_gptq_qweight(qweight, perm, k, n, "layer")));
  }
}

// The padded conversion on CUDA (padded qweight and perm through the repack kernel, scales padded on the GPU)
// equals the CPU conversion buffer for buffer.
TEST(GpuMarlinLayout, PaddedConversionMatchesCpu) {
  QH_REQUIRE_CUDA();
  for (const PaddingCase& c : {PaddingCase{160, 96, 64, true}, PaddingCase{320, 64, 128}, PaddingCase{128, 96, -1}}) {
    SCOPED_TRACE(std::to_string(c.k) + "x" + std::to_string(c.n));
    const auto source = gptq_layer(c);
    const auto cpu = to_marlin(*source, c10::kCPU, "layer");
    const auto gpu = to_marlin(*source, c10::Device(c10::kCUDA, 0), "layer");
    for (const auto& [name, slot] : gpu->tensors()) {
      EXPECT_TRUE(slot->value.is_cuda()) << name;
      EXPECT_TRUE(slot->value.cpu().equal(cpu->tensor(name))) << name;
    }
  }
}

}  // namespace
}  // namespace qh::marlin
