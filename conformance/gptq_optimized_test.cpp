// Optimized GPTQ (CUDA) against the reference over a sweep of shapes, bits, groups, act-order and static groups.
// Both run in float32 (the published GPTQ's precision) on the same inputs; the reference on the CPU. Agreement
// target (issue 4): >= 99.9 % identical integer codes, and an output error ||(W - Q) X|| within 1 % of the
// reference's. Codes may differ where a value sits within float32 rounding of a rounding boundary: the kernel
// fuses multiply-adds and cuBLAS sums the trailing GEMM in another order than the CPU, and error feedback carries
// a flipped code into later columns, so exact equality is not expected; the float64 reference bounds how far
// float32 rounding moves codes (GptqReference.Float32AgreesWithFloat64 holds the same 99.9 %).
#include <gtest/gtest.h>

#include "conformance/gpu_testing.h"
#include "conformance/gptq_case.h"
#include "impl/core/errors.h"
#include "impl/gptq/reference.h"

namespace qh::gptq {
namespace {

struct SweepCase {
  std::int64_t n, k;
  int bits, group_size;
  bool sym, desc_act, static_groups;
  int block_size;
  bool heavy_tails = true;  // real-like weights with outliers; false: plain Gaussian
};

void PrintTo(const SweepCase& c, std::ostream* os) {
  *os << c.n << "x" << c.k << " bits " << c.bits << " group " << c.group_size << (c.sym ? " sym" : " asym")
      << (c.desc_act ? " act-order" : "") << (c.static_groups ? " static" : "") << " block " << c.block_size
      << (c.heavy_tails ? " heavy-tailed" : " gaussian");
}

std::string case_name(const ::testing::TestParamInfo<SweepCase>& info) {
  const SweepCase& c = info.param;
  return std::to_string(c.n) + "x" + std::to_string(c.k) + "_b" + std::to_string(c.bits) + "_g" +
         (c.group_size < 0 ? std::string("ch") : std::to_string(c.group_size)) + (c.sym ? "_sym" : "_asym") +
         (c.desc_act ? "_act" : "") + (c.static_groups ? "_static" : "") + "_blk" + std::to_string(c.block_size) +
         (c.heavy_tails ? "" : "_gauss");
}

class GpuGptqOptimized : public ::testing::TestWithParam<SweepCase> {};

TEST_P(GpuGptqOptimized, AgreesWithReference) {
  QH_REQUIRE_CUDA();
  const SweepCase c = GetParam();
  const at::Tensor x = testing::correlated_activations(2 * c.k, c.k, std::uint64_t(c.k + c.bits));
  at::manual_seed(std::uint64_t(c.n));
  at::Tensor w = at::randn({c.n, c.k}, at::kDouble);
  if (c.heavy_tails) w = w * (1 + 3 * at::rand({c.n, c.k}, at::kDouble).pow(8));  // like real weight outliers
  GptqConfig cfg;
  cfg.bits = c.bits;
  cfg.group_size = c.group_size;
  cfg.sym = c.sym;
  cfg.desc_act = c.desc_act;
  cfg.static_groups = c.static_groups;
  cfg.block_size = c.block_size;
  const at::Tensor h = testing::hessian_of(x).to(at::kFloat);
  const at::Tensor w32 = w.to(at::kFloat);
  const GptqResult ref = gptq_reference(w32, h, cfg, "layer");
  const GptqResult opt = gptq_optimized(w32, h, cfg, "layer");
  ASSERT_TRUE(opt.q.is_cuda());
  const double same = ref.codes.eq(opt.codes.cpu()).to(at::kDouble).mean().item<double>();
  EXPECT_GE(same, 0.999) << "identical codes: " << same;
  EXPECT_TRUE(at::equal(ref.g_idx, opt.g_idx.cpu()));
  EXPECT_EQ(ref.scales.sizes(), opt.scales.sizes());
  const at::Tensor xt = x.t().to(at::kFloat);
  const double ref_err = (w32 - ref.q).matmul(xt).norm().item<double>();
  const double opt_err = (w32 - opt.q.cpu()).matmul(xt).norm().item<double>();
  EXPECT_LE(std::abs(opt_err - ref_err), 0.01 * ref_err) << "reference " << ref_err << ", optimized " << opt_err;
  // Q must be what the optimized path's own codes, scales and zeros say.
  EXPECT_TRUE(at::equal(testing::dequantized(opt), opt.q));
  EXPECT_EQ(opt.summary.attempts, ref.summary.attempts);
}

INSTANTIATE_TEST_SUITE_P(
    Sweep, GpuGptqOptimized,
    ::testing::Values(SweepCase{64, 256, 4, 128, true, false, false, 128}, SweepCase{64, 256, 4, 128, true, true, false, 128},
                      SweepCase{96, 384, 4, 32, false, true, false, 128}, SweepCase{32, 512, 3, 64, false, false, false, 128},
                      SweepCase{48, 256, 2, -1, true, false, false, 128}, SweepCase{40, 320, 8, 64, true, true, false, 96},
                      SweepCase{64, 512, 4, 128, true, true, true, 128}, SweepCase{17, 200, 4, 40, false, false, false, 64},
                      SweepCase{256, 1024, 4, 128, true, true, false, 128},
                      SweepCase{256, 1024, 4, 128, true, true, false, 128, false},
                      SweepCase{128, 512, 4, 32, false, false, false, 128, false}),
    case_name);

TEST(GpuGptqOptimized, RefusesBlocksLargerThanSharedMemoryHolds) {
  QH_REQUIRE_CUDA();
  GptqConfig cfg;
  cfg.block_size = 256;
  EXPECT_THROW(gptq_optimized(at::randn({8, 256}), at::eye(256), cfg, "layer"), ConfigError);
}

}  // namespace
}  // namespace qh::gptq
