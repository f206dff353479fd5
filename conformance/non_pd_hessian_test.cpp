// Non-positive-definite Hessians (seed failure: AutoGPTQ #708, Qwen2-7B, "linalg.cholesky: ... the leading minor
// of order 1 is not positive-definite"). Each case either recovers, with a finite result whose error is bounded
// and with the recovery recorded in the layer summary, or fails with NumericError naming the layer and what to
// change. "Bounded" here: every Q finite and the output error on the true (positive semi-definite) Hessian,
// sqrt(tr(E H E^T) / tr(W H W^T)) with E = W - Q, below 1, i.e. better than zeroing the layer; healthy 4-bit layers
// sit near 0.1, so this only catches blow-ups, which is what a pathological H produces when recovery goes wrong.
#include <gtest/gtest.h>

#include "conformance/gptq_case.h"
#include "impl/core/errors.h"
#include "impl/gptq/damping.h"
#include "impl/gptq/reference.h"

namespace qh::gptq {
namespace {

constexpr std::int64_t kRows = 16;

at::Tensor weights(std::int64_t k, std::uint64_t seed) {
  at::manual_seed(seed);
  return at::randn({kRows, k}, at::kDouble);
}

GptqConfig config64() {
  GptqConfig cfg;
  cfg.group_size = 32;
  cfg.float64 = true;
  return cfg;
}

// `h_true`: the positive semi-definite Hessian the case was derived from.
void expect_recovered(const GptqResult& r, const at::Tensor& w, const at::Tensor& h_true) {
  EXPECT_TRUE(at::isfinite(r.q).all().item<bool>());
  const at::Tensor e = w - r.q.to(at::kDouble);
  const double relative = std::sqrt((e.matmul(h_true).matmul(e.t())).trace().item<double>() /
                                    (w.matmul(h_true).matmul(w.t())).trace().item<double>());
  EXPECT_LT(relative, 1.0);
  EXPECT_TRUE(std::isfinite(r.summary.loss));
  EXPECT_GT(r.summary.min_pivot, 0);
}

// H with one negative eigenvalue: minimum eigenvalue = -fraction * mean(diag(H)) of the result.
at::Tensor with_negative_eigenvalue(const at::Tensor& h, double fraction) {
  const auto [values, vectors] = at::linalg_eigh(h);
  at::Tensor v = values.clone();
  // Replace the smallest eigenvalue; mean(diag) = trace / k, and the trace moves with it, so solve for it.
  const double k = double(h.size(0));
  const double rest = (values.sum() - values[0]).item<double>();
  v[0] = -fraction * rest / (k + fraction);
  return vectors.matmul(at::diag(v)).matmul(vectors.t());
}

TEST(NonPdHessian, FewerTokensThanColumnsRecoversAtTheFirstDamp) {
  // Rank-deficient H (8 tokens, 64 columns): damping alone makes it positive-definite.
  const at::Tensor h = testing::hessian_of(testing::correlated_activations(8, 64, 1));
  const at::Tensor w = weights(64, 2);
  const GptqResult r = gptq_reference(w, h, config64(), "layer", 8);
  expect_recovered(r, w, h);
  EXPECT_EQ(r.summary.attempts, 1);
  EXPECT_EQ(r.summary.calib_tokens, 8);
}

TEST(NonPdHessian, DeadFirstColumnIsTheOrderOneMinor) {
  // The seed's "leading minor of order 1": a first column no activation reached has H[0, :] = 0.
  at::Tensor x = testing::correlated_activations(256, 64, 3);
  x.select(1, 0).zero_();
  const at::Tensor w = weights(64, 4);
  const GptqResult r = gptq_reference(w, testing::hessian_of(x), config64(), "layer");
  expect_recovered(r, w, testing::hessian_of(x));
  EXPECT_EQ(r.summary.dead_columns, 1);
  EXPECT_TRUE(at::equal(r.codes.select(1, 0), at::full({kRows}, 8, at::kInt))) << "dead column not zeroed";
}

TEST(NonPdHessian, DuplicatedColumnsRecover) {
  at::Tensor x = testing::correlated_activations(256, 64, 5);
  x.select(1, 7).copy_(x.select(1, 6));
  const at::Tensor w = weights(64, 6);
  expect_recovered(gptq_reference(w, testing::hessian_of(x), config64(), "layer"), w, testing::hessian_of(x));
}

TEST(NonPdHessian, NegativeEigenvalueEscalatesToTheFirstSufficientDamp) {
  // H + p * mean(diag) * I is positive-definite exactly when p * mean(diag) > -lambda_min, so with the minimum
  // eigenvalue at -0.031 * mean(diag) the policy (0.01, +0.0025) must stop at the first p above 0.031: 0.0325,
  // schedule index 9. The galloping search tries indices 0, 1, 3, 7 (fail), 15 (works), then bisects: 11 (works),
  // 9 (works), 8 (fails): 8 factorizations where GPTQModel's linear scan needs 10.
  const at::Tensor h_true = testing::hessian_of(testing::correlated_activations(256, 64, 7));
  const at::Tensor h = with_negative_eigenvalue(h_true, 0.031);
  const double lambda_min = at::linalg_eigvalsh(h)[0].item<double>();
  ASSERT_NEAR(lambda_min / h.diagonal().mean().item<double>(), -0.031, 1e-9);
  const at::Tensor w = weights(64, 8);
  const GptqResult r = gptq_reference(w, h, config64(), "layer");
  expect_recovered(r, w, h_true);
  EXPECT_NEAR(r.summary.damp_final, 0.0325, 1e-12);
  EXPECT_EQ(r.summary.attempts, 8);
}

TEST(NonPdHessian, StrictModeRefusesAnyEscalation) {
  const at::Tensor h = with_negative_eigenvalue(testing::hessian_of(testing::correlated_activations(256, 64, 7)), 0.031);
  GptqConfig cfg = config64();
  cfg.damping.strict = true;
  try {
    gptq_reference(weights(64, 8), h, cfg, "model.layers.0.self_attn.q_proj");
    FAIL() << "strict mode escalated";
  } catch (const NumericError& e) {
    EXPECT_EQ(e.where().layer, "model.layers.0.self_attn.q_proj");
    EXPECT_NE(std::string(e.what()).find("strict damping"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is not positive-definite"), std::string::npos) << e.what();
  }
}

TEST(NonPdHessian, CapReachedNamesLastDampAndTheTokenShortfall) {
  // lambda_min = -2 * mean(diag): no damp below the cap of 1 can fix it. With 32 tokens for 64 columns the message
  // must say that calibration data is short, with the numbers.
  const at::Tensor h = with_negative_eigenvalue(testing::hessian_of(testing::correlated_activations(32, 64, 9)), 2.0);
  GptqConfig cfg = config64();
  cfg.damping.increment = 0.1;
  try {
    gptq_reference(weights(64, 10), h, cfg, "mlp.down_proj", 32);
    FAIL() << "recovered from an unrecoverable Hessian";
  } catch (const NumericError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.where().layer, "mlp.down_proj");
    EXPECT_NE(msg.find("last damp_percent 0.91"), std::string::npos) << msg;
    EXPECT_NE(msg.find("only 32 calibration tokens for 64 columns"), std::string::npos) << msg;
  }
}

TEST(NonPdHessian, UnrecoverableFailsInLogarithmicallyManyAttempts) {
  // Default policy (0.01 + i * 0.0025 below 1: indices 0..395). No damp below the cap fixes lambda_min = -2 mean,
  // and the search proves it per precision with indices 0, 1, 3, 7, ..., 255, then 395: 10 factorizations, 20 with
  // the float64 retry (a linear scan: 792, minutes at K = 4096).
  const at::Tensor h = with_negative_eigenvalue(testing::hessian_of(testing::correlated_activations(256, 64, 21)), 2.0);
  GptqConfig cfg;
  cfg.group_size = 32;
  try {
    gptq_reference(weights(64, 22).to(at::kFloat), h, cfg, "o_proj");
    FAIL() << "recovered from an unrecoverable Hessian";
  } catch (const NumericError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("after 20 attempts in float32 and float64"), std::string::npos) << msg;
    EXPECT_NE(msg.find("last damp_percent 0.9975"), std::string::npos) << msg;
  }
}

TEST(NonPdHessian, NearSingularFloat32RetriesInFloat64) {
  // Condition number 1e12 with a tiny damp: float32 (7 digits) cannot factorize it, float64 can; the retry must
  // happen and be recorded rather than the layer failing.
  const std::int64_t k = 64;
  at::manual_seed(11);
  const at::Tensor basis = std::get<0>(at::linalg_qr(at::randn({k, k}, at::kDouble)));
  const at::Tensor h = basis.matmul(at::diag(at::logspace(0, -12, k, 10, at::kDouble))).matmul(basis.t());
  GptqConfig cfg;
  cfg.group_size = 32;
  cfg.damping.percdamp = 1e-10;
  cfg.damping.increment = 0;
  const at::Tensor w = weights(k, 12);
  const GptqResult r = gptq_reference(w.to(at::kFloat), h, cfg, "layer");  // H as accumulated, in float64
  expect_recovered(r, w, h);
  EXPECT_TRUE(r.summary.float64_retry);
  EXPECT_EQ(r.summary.attempts, 2);
}

TEST(NonPdHessian, HugeDynamicRangeRecovers) {
  // Column scales from 1e-15 to 1e15: H entries span 1e-30 .. 1e30.
  const std::int64_t k = 64;
  const at::Tensor scale = at::logspace(-15, 15, k, 10, at::kDouble);
  const at::Tensor x = testing::correlated_activations(256, k, 13) * scale;
  const at::Tensor w = weights(k, 14);
  expect_recovered(gptq_reference(w, testing::hessian_of(x), config64(), "layer"), w, testing::hessian_of(x));
}

TEST(NonPdHessian, Fp16AccumulationRoundingRecovers) {
  // H of rank 16 stored in fp16 (as an fp16 accumulation would leave it): rounding gives it negative eigenvalues.
  const at::Tensor x = testing::correlated_activations(16, 64, 15);
  const at::Tensor h = testing::hessian_of(x).to(at::kHalf).to(at::kDouble);
  ASSERT_LT(at::linalg_eigvalsh(h)[0].item<double>(), 0) << "the case needs a negative eigenvalue";
  const at::Tensor w = weights(64, 16);
  expect_recovered(gptq_reference(w, h, config64(), "layer", 16), w, testing::hessian_of(x));
}

TEST(NonPdHessian, NanOrInfIsRefusedByName) {
  at::Tensor h = testing::hessian_of(testing::correlated_activations(128, 64, 17));
  h[3][5] = std::numeric_limits<double>::infinity();
  h[5][3] = std::nan("");
  try {
    gptq_reference(weights(64, 18), h, config64(), "v_proj");
    FAIL();
  } catch (const NumericError& e) {
    EXPECT_EQ(e.where().layer, "v_proj");
    EXPECT_NE(std::string(e.what()).find("found 2 non-finite entries"), std::string::npos) << e.what();
  }
}

TEST(NonPdHessian, AllZeroIsRefusedByName) {
  try {
    gptq_reference(weights(64, 19), at::zeros({64, 64}, at::kDouble), config64(), "k_proj");
    FAIL();
  } catch (const NumericError& e) {
    EXPECT_EQ(e.where().layer, "k_proj");
    EXPECT_NE(std::string(e.what()).find("no calibration data reached this layer"), std::string::npos);
  }
}

TEST(NonPdHessian, NonPositiveMeanDiagonalIsRefusedByName) {
  // damp = damp_percent * mean(diag(H)) <= 0 can never make H positive-definite: refused before any attempt.
  try {
    gptq_reference(weights(64, 23), -at::eye(64, at::kDouble), config64(), "gate_proj");
    FAIL();
  } catch (const NumericError& e) {
    EXPECT_EQ(e.where().layer, "gate_proj");
    EXPECT_NE(std::string(e.what()).find("mean diagonal is not positive"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("mean(diag(H)) = -1"), std::string::npos) << e.what();
  }
}

TEST(NonPdHessian, InvalidPolicyIsConfigError) {
  GptqConfig cfg = config64();
  cfg.damping.percdamp = 1.5;
  EXPECT_THROW(gptq_reference(weights(64, 20), at::eye(64, at::kDouble), cfg, "l"), ConfigError);
}

}  // namespace
}  // namespace qh::gptq
