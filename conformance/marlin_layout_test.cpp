// The Marlin layout (impl/marlin): the permutation tables against FORMATS.md 3.1's listed entries, the packed words
// against AutoGPTQ's gptq_repack description (FORMATS.md 3.2, which gathers by tile coordinates and never uses the
// 1024-entry table: an independent oracle), pack/unpack and scale permutations as inverses, and the CUDA repack
// (with and without an act-order permutation) bit for bit against the CPU reference; and B and s as AutoGPTQ 0.7.1's
// own Marlin QuantLinear.pack wrote them (fixtures/marlin/, made by fixtures/gen_marlin_interop.py).
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
// outside -1/32/64/128, an N that does not tile.
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
  EXPECT_NE(message(layer(4, 128, true, 96)).find("N = 96"), std::string::npos);
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

}  // namespace
}  // namespace qh::marlin
