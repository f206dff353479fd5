// QuantLinear buffers (impl/quant_linear): packing GPTQ output, the codes the tools' pack() derives, checks of
// untrusted buffers, v1/v2 detection, and the CUDA dequantize kernel against the CPU reference bit for bit.
#include <gtest/gtest.h>

#include "conformance/gpu_testing.h"
#include "conformance/gptq_case.h"
#include "impl/checkpoint/quantization.h"
#include "impl/core/errors.h"
#include "impl/quant_linear/dequantize.h"
#include "impl/quant_linear/from_gptq.h"

namespace qh::quant_linear {
namespace {

struct Layer {
  gptq::GptqResult result;
  QuantSpec spec;
};

Layer gptq_layer(int bits, int group_size, bool sym, bool desc_act, std::int64_t k = 256, std::int64_t n = 96,
                 std::uint64_t seed = 3) {
  at::manual_seed(seed);
  const at::Tensor w = at::randn({n, k}, at::kDouble);
  gptq::GptqConfig c;
  c.bits = bits;
  c.group_size = group_size;
  c.sym = sym;
  c.desc_act = desc_act;
  c.float64 = true;
  const at::Tensor h = testing::hessian_of(testing::correlated_activations(2 * k, k, seed));
  return {gptq::gptq_reference(w, h, c, "layer"), QuantSpec{k, n, bits, group_size, sym, desc_act, ZeroFormat::V2}};
}

PackedWeights packed_of(const Layer& l, ZeroFormat format, c10::ScalarType dtype = at::kHalf) {
  QuantSpec spec = l.spec;
  spec.zero_format = format;
  return pack(l.result.codes, l.result.zeros, l.result.scales, l.result.g_idx, spec, dtype, "layer");
}

template <class E>
E error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  }
  ADD_FAILURE() << "no error thrown";
  throw std::logic_error("no error");
}

// The dequantized buffers equal GPTQ's own codes and grids with the scale rounded to fp16 (closed form:
// fp16(scale) * (code - zero), exact in float32), for every width, act-order on and off, v1 and v2.
TEST(QuantLinear, DequantizeMatchesGptqCodes) {
  for (int bits : {2, 3, 4, 8}) {
    for (bool desc_act : {false, true}) {
      const Layer l = gptq_layer(bits, 64, true, desc_act);
      const auto all = at::indexing::Slice();
      const at::Tensor g = l.result.g_idx.to(at::kLong);
      const at::Tensor s16 = l.result.scales.to(at::kHalf).to(at::kFloat);
      const at::Tensor expected = (s16.index({all, g}) * (l.result.codes.to(at::kFloat) -
                                                           l.result.zeros.to(at::kFloat).index({all, g})))
                                      .t()
                                      .to(at::kHalf);
      for (ZeroFormat f : {ZeroFormat::V1, ZeroFormat::V2}) {
        QuantSpec spec = l.spec;
        spec.zero_format = f;
        const PackedWeights p = packed_of(l, f);
        ASSERT_NO_THROW(validate_packed(p, spec, "layer"));
        EXPECT_TRUE(dequantize_reference(p, spec, at::kHalf, "layer").equal(expected)) << bits << " bits";
      }
    }
  }
}

// Symmetric 4-bit v1 qzeros are 0x77777777 (2004318071) in every word (FORMATS.md 1.5).
TEST(QuantLinear, SymmetricV1ZerosWord) {
  const PackedWeights p = packed_of(gptq_layer(4, 128, true, false), ZeroFormat::V1);
  EXPECT_TRUE(p.qzeros.eq(2004318071).all().item<bool>());
}

// The v1 asymmetric bug: a zero point of 0 stores -1 and corrupts its word; we refuse and point to gptq_v2.
TEST(QuantLinear, V1RefusesZeroPointZero) {
  Layer l = gptq_layer(4, 128, false, false);
  l.result.zeros[3][0] = 0;
  const auto e = error_of<ConfigError>([&] { packed_of(l, ZeroFormat::V1); });
  EXPECT_NE(std::string(e.what()).find("gptq_v2"), std::string::npos) << e.what();
  EXPECT_NO_THROW(packed_of(l, ZeroFormat::V2));
}

// The tools' pack() re-derives codes from the fake-quantized weight (FORMATS.md 1.4); from GPTQ's own Q they give
// GPTQ's codes back under both rounding rules.
TEST(QuantLinear, CodesFromFakeQuantRecoverGptqCodes) {
  const Layer l = gptq_layer(4, 32, false, true);
  for (PackRounding r : {PackRounding::AutoGptq, PackRounding::GptqModel}) {
    // GPTQModel divides by the float32 scale: exact. AutoGPTQ divides by the fp16-rounded scale: with Q given
    // in float32 the quotient can move by |code - zero| * 2^-11 < 0.5, so it still rounds to the same code.
    const at::Tensor codes = codes_from_fake_quant(l.result.q.to(at::kFloat), l.result.scales.to(at::kFloat),
                                                   l.result.zeros.to(at::kFloat), l.result.g_idx, l.spec, at::kHalf,
                                                   r, "layer");
    EXPECT_TRUE(codes.equal(l.result.codes)) << int(r);
  }
}

// A code outside the grid would be OR-ed into its neighbours' bits by the tools (no clamp); we refuse it.
TEST(QuantLinear, CodesOutsideTheGridAreRefused) {
  const Layer l = gptq_layer(4, 32, true, false);
  at::Tensor q = l.result.q.to(at::kFloat).clone();
  q[5][7] = q[5][7] + 100.0 * l.result.scales[5][0].item<double>();
  const auto e = error_of<NumericError>([&] {
    codes_from_fake_quant(q, l.result.scales.to(at::kFloat), l.result.zeros.to(at::kFloat), l.result.g_idx, l.spec,
                          at::kHalf, PackRounding::GptqModel, "layer");
  });
  EXPECT_NE(std::string(e.what()).find("row 5, column 7"), std::string::npos) << e.what();
}

// Untrusted buffers: each defect is named by tensor with the numbers.
TEST(QuantLinear, ValidateNamesEachDefect) {
  const Layer l = gptq_layer(4, 64, true, false);
  const PackedWeights good = packed_of(l, ZeroFormat::V1);
  QuantSpec spec = l.spec;
  spec.zero_format = ZeroFormat::V1;

  PackedWeights wrong_bits = good;  // qweight packed for 8 bits under a 4-bit config: config/tensor disagreement
  wrong_bits.qweight = at::zeros({256 / 32 * 8, 96}, at::kInt);
  EXPECT_EQ(error_of<ShapeError>([&] { validate_packed(wrong_bits, spec, "m.q", "f.safetensors"); }).where().tensor,
            "m.q.qweight");

  PackedWeights out_of_range = good;
  out_of_range.g_idx = good.g_idx.clone();
  out_of_range.g_idx[9] = 4;  // 4 groups: 0..3
  EXPECT_EQ(error_of<FormatError>([&] { validate_packed(out_of_range, spec, "m.q"); }).where().tensor, "m.q.g_idx");

  PackedWeights permuted = good;  // act-order g_idx under desc_act false
  permuted.g_idx = good.g_idx.flip(0).contiguous();
  EXPECT_EQ(error_of<FormatError>([&] { validate_packed(permuted, spec, "m.q"); }).where().tensor, "m.q.g_idx");

  PackedWeights nan_scales = good;
  nan_scales.scales = good.scales.clone();
  nan_scales.scales[2][5] = NAN;
  const auto e = error_of<NumericError>([&] { validate_packed(nan_scales, spec, "m.q"); });
  EXPECT_EQ(e.where().tensor, "m.q.scales");
  EXPECT_NE(std::string(e.what()).find("group 2, column 5"), std::string::npos) << e.what();

  PackedWeights float_qweight = good;
  float_qweight.qweight = good.qweight.to(at::kFloat);
  EXPECT_EQ(error_of<FormatError>([&] { validate_packed(float_qweight, spec, "m.q"); }).where().tensor, "m.q.qweight");
}

// v1/v2 from the words: a stated format the symmetric zeros contradict is an error (the "!!!!" models); an unstated
// one is settled by them; asymmetric words cannot tell.
TEST(QuantLinear, ZeroFormatFromWords) {
  const Layer l = gptq_layer(4, 64, true, false);
  const PackedWeights v2 = packed_of(l, ZeroFormat::V2);
  EXPECT_EQ(zero_format_from_qzeros(v2.qzeros, l.spec), ZeroFormat::V2);
  EXPECT_EQ(zero_format_from_qzeros(packed_of(l, ZeroFormat::V1).qzeros, l.spec), ZeroFormat::V1);

  checkpoint::QuantizedLayout stated;  // checkpoint_format gptq (v1), stated
  QuantSpec as_v1 = l.spec;
  as_v1.zero_format = ZeroFormat::V1;
  const auto e = error_of<FormatError>([&] { checkpoint::check_zero_format(v2.qzeros, as_v1, stated, "m.q", "f"); });
  EXPECT_EQ(e.where().tensor, "m.q.qzeros");
  checkpoint::QuantizedLayout silent;
  silent.zero_format_stated = false;
  EXPECT_EQ(checkpoint::check_zero_format(v2.qzeros, as_v1, silent, "m.q", "f"), ZeroFormat::V2);

  const Layer asym = gptq_layer(4, 64, false, false);
  EXPECT_EQ(zero_format_from_qzeros(packed_of(asym, ZeroFormat::V2).qzeros, asym.spec), std::nullopt);
}

// The CUDA kernel gives the CPU reference's weights bit for bit: every width, v1/v2, act-order, three dtypes.
TEST(GpuQuantLinear, DequantizeKernelMatchesReference) {
  QH_REQUIRE_CUDA();
  const c10::Device gpu(c10::kCUDA, 0);
  for (int bits : {2, 3, 4, 8}) {
    for (bool desc_act : {false, true}) {
      const Layer l = gptq_layer(bits, desc_act ? 32 : -1, !desc_act, desc_act, 512, 160, 11);
      for (ZeroFormat f : {ZeroFormat::V1, ZeroFormat::V2}) {
        for (c10::ScalarType dtype : {at::kHalf, at::kBFloat16, at::kFloat}) {
          SCOPED_TRACE(std::to_string(bits) + " bits, " + c10::toString(dtype));
          QuantSpec spec = l.spec;
          spec.zero_format = f;
          PackedWeights p = packed_of(l, f, dtype);
          const at::Tensor reference = dequantize_reference(p, spec, dtype, "layer");
          p = {p.qweight.to(gpu), p.qzeros.to(gpu), p.scales.to(gpu), p.g_idx.to(gpu)};
          const at::Tensor on_gpu = dequantize_weights(p, spec);
          EXPECT_TRUE(on_gpu.is_cuda());
          EXPECT_TRUE(on_gpu.cpu().equal(reference));
        }
      }
    }
  }
}

}  // namespace
}  // namespace qh::quant_linear
