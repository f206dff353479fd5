// Reference GPTQ (impl/gptq/reference) against closed-form answers: with a diagonal Hessian no error is propagated,
// so GPTQ must equal round-to-nearest with its grid (per group, in processing order under act-order); a 1-column
// layer has a closed-form result; lazy batch updates equal the unblocked loop; and on correlated inputs GPTQ must
// beat round-to-nearest on the output error it minimizes. Plus Hessian accumulation and bad-input errors.
#include <gtest/gtest.h>

#include <numeric>

#include "conformance/gptq_case.h"
#include "impl/core/errors.h"
#include "impl/gptq/hessian.h"
#include "impl/gptq/reference.h"

namespace qh::gptq {
namespace {

std::vector<std::int64_t> range(std::int64_t begin, std::int64_t end) {
  std::vector<std::int64_t> out(std::size_t(end - begin));
  std::iota(out.begin(), out.end(), begin);
  return out;
}

// W[:, g_idx] dequantized from the result's own codes, scales and zeros must be its Q: the tensors are consistent.
void expect_consistent(const GptqResult& r) {
  EXPECT_TRUE(at::equal(testing::dequantized(r), r.q)) << "Q differs from scales * (codes - zeros)";
}

struct DiagonalCase {
  int bits;
  int group_size;
  bool sym;
};

class GptqDiagonalHessian : public ::testing::TestWithParam<DiagonalCase> {};

TEST_P(GptqDiagonalHessian, EqualsRoundToNearestPerGroup) {
  // Pins the grid conventions (FORMATS.md 2.3) and the group bookkeeping: H diagonal -> Hinv diagonal -> no error
  // feedback, so every code is round-to-nearest of the original weight with its group's min-max grid.
  const auto [bits, group_size, sym] = GetParam();
  const std::int64_t n = 24, k = 256;
  at::manual_seed(11);
  const at::Tensor w = at::randn({n, k}, at::kDouble);
  const at::Tensor h = at::diag(at::rand({k}, at::kDouble) + 0.5);
  GptqConfig cfg;
  cfg.bits = bits;
  cfg.group_size = group_size;
  cfg.sym = sym;
  cfg.float64 = true;
  const GptqResult r = gptq_reference(w, h, cfg, "layer");
  const std::int64_t g = group_size == -1 ? k : group_size;
  for (std::int64_t c0 = 0; c0 < k; c0 += g) {
    const auto cols = range(c0, c0 + g);
    EXPECT_EQ(testing::codes_at(r.codes, cols), testing::rtn_codes(w, cols, bits, sym)) << "group at " << c0;
  }
  EXPECT_EQ(r.scales.sizes(), (std::vector<std::int64_t>{n, k / g}));
  EXPECT_TRUE(at::equal(r.g_idx, at::arange(k, at::kInt).div(g, "floor").to(at::kInt)));
  expect_consistent(r);
  EXPECT_EQ(r.summary.attempts, 1);
}

INSTANTIATE_TEST_SUITE_P(Grid, GptqDiagonalHessian,
                         ::testing::Values(DiagonalCase{4, 128, true}, DiagonalCase{4, 32, false},
                                           DiagonalCase{2, 64, true}, DiagonalCase{3, -1, false},
                                           DiagonalCase{8, 128, false}, DiagonalCase{4, -1, true}));

TEST(GptqReference, ActOrderGroupsFollowProcessingOrder) {
  // act-order (FORMATS.md 1.6): columns run in descending diag(H); groups are blocks of G in that order, so
  // g_idx[k] = (rank of k) / G, and Q comes back in the original column order.
  const std::int64_t n = 16, k = 128, g = 32;
  at::manual_seed(5);
  const at::Tensor w = at::randn({n, k}, at::kDouble);
  const at::Tensor diag = at::randperm(k, at::kDouble) + 1;  // distinct, so the order is unambiguous
  GptqConfig cfg;
  cfg.group_size = int(g);
  cfg.desc_act = true;
  cfg.float64 = true;
  const GptqResult r = gptq_reference(w, at::diag(diag), cfg, "layer");
  const at::Tensor order = std::get<1>(diag.sort(/*stable=*/true, 0, /*descending=*/true));
  std::vector<std::int64_t> processing(order.data_ptr<std::int64_t>(), order.data_ptr<std::int64_t>() + k);
  for (std::int64_t rank = 0; rank < k; ++rank) {
    EXPECT_EQ(r.g_idx[processing[std::size_t(rank)]].item<int>(), rank / g);
  }
  for (std::int64_t b = 0; b < k / g; ++b) {
    const std::vector<std::int64_t> cols(processing.begin() + b * g, processing.begin() + (b + 1) * g);
    EXPECT_EQ(testing::codes_at(r.codes, cols), testing::rtn_codes(w, cols, 4, true)) << "act-order group " << b;
  }
  expect_consistent(r);
}

TEST(GptqReference, StaticGroupsUseColumnBlocksUnderActOrder) {
  const std::int64_t n = 8, k = 128, g = 64;
  at::manual_seed(6);
  const at::Tensor w = at::randn({n, k}, at::kDouble);
  GptqConfig cfg;
  cfg.group_size = int(g);
  cfg.desc_act = true;
  cfg.static_groups = true;
  cfg.float64 = true;
  const GptqResult r = gptq_reference(w, at::diag(at::randperm(k, at::kDouble) + 1), cfg, "layer");
  EXPECT_TRUE(at::equal(r.g_idx, at::arange(k, at::kInt).div(g, "floor").to(at::kInt)));
  for (std::int64_t c0 = 0; c0 < k; c0 += g) {
    EXPECT_EQ(testing::codes_at(r.codes, range(c0, c0 + g)), testing::rtn_codes(w, range(c0, c0 + g), 4, true));
  }
  expect_consistent(r);
}

TEST(GptqReference, OneColumnLayerHasTheClosedFormResult) {
  // K = 1, sym 4-bit, per channel: a positive v keeps xmin = 0 (the reference's quirk), scale = v/15, zero = 8,
  // code = clamp(15 + 8) = 15, q = 7v/15; a negative v gets xmin = -|v|, scale = 2|v|/15, round(-7.5) = -8 (half to
  // even) -> code 0, q = -16|v|/15.
  const at::Tensor w = at::tensor({3.0, -1.5}, at::kDouble).reshape({2, 1});
  GptqConfig cfg;
  cfg.group_size = -1;
  cfg.float64 = true;
  const GptqResult r = gptq_reference(w, at::ones({1, 1}, at::kDouble), cfg, "one_column");
  EXPECT_EQ(r.codes[0][0].item<int>(), 15);
  EXPECT_EQ(r.codes[1][0].item<int>(), 0);
  EXPECT_DOUBLE_EQ(r.q[0][0].item<double>(), 3.0 * 7 / 15);
  EXPECT_DOUBLE_EQ(r.q[1][0].item<double>(), -1.5 * 16 / 15);
}

// Blocking only defers the trailing updates, so when every group starts at a block start (where W is up to
// date: the published code refreshes a group's grid from W, not from the block's working copy) two block sizes
// must agree (float64: they differ by summation order only, far below the 1e-9 allowed).
void expect_block_size_invariant(int group_size, int block_a, int block_b) {
  const std::int64_t n = 32, k = 256;
  const at::Tensor h = testing::hessian_of(testing::correlated_activations(512, k, 3));
  at::manual_seed(4);
  const at::Tensor w = at::randn({n, k}, at::kDouble);
  GptqConfig a_cfg;
  a_cfg.group_size = group_size;
  a_cfg.block_size = block_a;
  a_cfg.float64 = true;
  GptqConfig b_cfg = a_cfg;
  b_cfg.block_size = block_b;
  const GptqResult a = gptq_reference(w, h, a_cfg, "layer");
  const GptqResult b = gptq_reference(w, h, b_cfg, "layer");
  EXPECT_TRUE(at::equal(a.codes, b.codes));
  EXPECT_LT((a.q - b.q).abs().max().item<double>(), 1e-9);
  expect_consistent(a);
}

TEST(GptqReference, LazyBatchUpdatesEqualTheUnblockedLoopPerChannel) { expect_block_size_invariant(-1, 128, 256); }

TEST(GptqReference, LazyBatchUpdatesDoNotDependOnBlockSizeForAlignedGroups) {
  expect_block_size_invariant(128, 64, 128);
}

TEST(GptqReference, BeatsRoundToNearestOnOutputError) {
  // The objective GPTQ minimizes is ||(W - Q) X||; on correlated inputs it must do better than round-to-nearest
  // with the same grids (GPTQ's per-column step is RTN plus error feedback that can only lower the quadratic).
  const std::int64_t n = 64, k = 256;
  const at::Tensor x = testing::correlated_activations(1024, k, 8);
  at::manual_seed(9);
  const at::Tensor w = at::randn({n, k}, at::kDouble);
  GptqConfig cfg;
  cfg.float64 = true;
  const GptqResult r = gptq_reference(w, testing::hessian_of(x), cfg, "layer");
  // An identity Hessian turns GPTQ into RTN (GptqDiagonalHessian checks that).
  const GptqResult rtn = gptq_reference(w, at::eye(k, at::kDouble), cfg, "layer");
  const double gptq_err = (w - r.q).matmul(x.t()).norm().item<double>();
  const double rtn_err = (w - rtn.q).matmul(x.t()).norm().item<double>();
  EXPECT_LT(gptq_err, rtn_err);
  EXPECT_GT(r.summary.loss, 0);
}

TEST(GptqReference, Float32AgreesWithFloat64) {
  // The float32 reference (the published GPTQ's precision) must pick the same integer code as the float64 oracle
  // for >= 99.9 % of weights: a code flips only where a value lands within float32 rounding (~1e-7 relative, grown
  // by error feedback) of a rounding boundary.
  const std::int64_t n = 128, k = 512;
  const at::Tensor x = testing::correlated_activations(2048, k, 12);
  at::manual_seed(13);
  const at::Tensor w = at::randn({n, k}, at::kDouble);
  GptqConfig f64;
  f64.float64 = true;
  f64.desc_act = true;
  GptqConfig f32 = f64;
  f32.float64 = false;
  const at::Tensor h = testing::hessian_of(x);
  const GptqResult a = gptq_reference(w, h, f64, "layer");
  const GptqResult b = gptq_reference(w.to(at::kFloat), h.to(at::kFloat), f32, "layer");
  const double same = a.codes.eq(b.codes).to(at::kDouble).mean().item<double>();
  EXPECT_GE(same, 0.999) << "identical codes: " << same;
}

// --- Hessian accumulation ----------------------------------------------------------------------------------------

TEST(GptqHessian, RunningAverageEqualsTwoOverSamplesTimesXtX) {
  // FORMATS.md 2.1: a (batch, seq, K) batch counts `batch` samples, a 2-D batch one; H = 2/n * sum x x^T.
  const std::int64_t k = 16;
  at::manual_seed(1);
  const at::Tensor a = at::randn({3, 5, k}), b = at::randn({7, k}).to(at::kHalf), c = at::randn({2, 4, k});
  HessianAccumulator acc(k, "layer", at::kDouble);
  acc.add_batch(a);
  acc.add_batch(b);
  acc.add_batch(c);
  const at::Tensor all = at::cat({a.reshape({-1, k}).to(at::kDouble), b.to(at::kDouble),
                                  c.reshape({-1, k}).to(at::kDouble)});
  const at::Tensor expected = 2.0 / (3 + 1 + 2) * all.t().matmul(all);
  EXPECT_EQ(acc.samples(), 6);
  EXPECT_EQ(acc.tokens(), 15 + 7 + 8);
  EXPECT_LT((acc.hessian() - expected).abs().max().item<double>(), 1e-12 * expected.abs().max().item<double>());
}

TEST(GptqHessian, BadInputsAreTypedErrors) {
  HessianAccumulator acc(16, "model.layers.3.mlp.down_proj");
  try {
    acc.hessian();
    FAIL() << "an empty calibration set produced a Hessian";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.where().layer, "model.layers.3.mlp.down_proj");
    EXPECT_NE(std::string(e.what()).find("calibration set is empty"), std::string::npos);
  }
  EXPECT_THROW(acc.add_batch(at::randn({4, 15})), ShapeError);
  EXPECT_THROW(acc.add_batch(at::ones({4, 16}, at::kInt)), ConfigError);
  at::Tensor nan = at::randn({4, 16});
  nan[1][2] = std::nan("");
  EXPECT_THROW(acc.add_batch(nan), NumericError);
  EXPECT_THROW(HessianAccumulator(16, "l", at::kHalf), ConfigError);
}

// --- Bad input to GPTQ -------------------------------------------------------------------------------------------

TEST(GptqReference, BadInputsAreTypedErrorsNamingTheLayer) {
  const at::Tensor w = at::randn({8, 256}), h = at::eye(256);
  GptqConfig cfg;
  auto expect_error = [&](auto&& call, const std::string& text) {
    try {
      call();
      FAIL() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.where().layer, "q_proj");
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  GptqConfig bad_bits = cfg;
  bad_bits.bits = 5;
  expect_error([&] { gptq_reference(w, h, bad_bits, "q_proj"); }, "expected 2, 3, 4 or 8, found 5");
  GptqConfig bad_group = cfg;
  bad_group.group_size = 96;
  expect_error([&] { gptq_reference(w, h, bad_group, "q_proj"); }, "divide in_features 256");
  expect_error([&] { gptq_reference(at::randn({256}), h, cfg, "q_proj"); }, "weight must be");
  expect_error([&] { gptq_reference(w, at::eye(128), cfg, "q_proj"); }, "expected shape [256, 256]");
  expect_error([&] { gptq_reference(w.to(at::kInt), h, cfg, "q_proj"); }, "floating point");
  expect_error([&] { gptq_reference(w, h.to(at::kInt), cfg, "q_proj"); }, "the Hessian must be floating point");
  GptqConfig bad_block = cfg;
  bad_block.block_size = 0;
  expect_error([&] { gptq_reference(w, h, bad_block, "q_proj"); }, "block_size must be positive");
  GptqConfig static_without_groups = cfg;
  static_without_groups.group_size = -1;
  static_without_groups.static_groups = true;
  expect_error([&] { gptq_reference(w, h, static_without_groups, "q_proj"); }, "static_groups needs groups");
  expect_error([&] { gptq_optimized(w, h, cfg, "q_proj", -1, c10::kCPU); }, "the optimized GPTQ");
  at::Tensor nan_w = w.clone();
  nan_w[0][0] = std::nan("");
  EXPECT_THROW(gptq_reference(nan_w, h, cfg, "q_proj"), NumericError);
}

}  // namespace
}  // namespace qh::gptq
