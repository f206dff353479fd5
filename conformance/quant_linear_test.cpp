// QuantLinear buffers (impl/quant_linear): packing GPTQ output, the codes the tools' pack() derives, checks of
// untrusted buffers, v1/v2 detection, and the CUDA dequantize kernel against the CPU reference bit for bit.
#include <gtest/gtest.h>

#include "conformance/gpu_testing.h"
#include "conformance/gptq_case.h"
#include "conformance/testing.h"
#include "impl/checkpoint/quantization.h"
#include "impl/core/errors.h"
#include "impl/quant_linear/dequantize.h"
#include "impl/quant_linear/from_gptq.h"
#include "impl/quant_linear/quant_linear.h"

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

using testing::error_of;

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

// Random GPTQ-oriented inputs for `spec` (desc_act off): codes (N, K), zero points (N, groups) in [1, maxq] (v1
// cannot hold 0), scales (N, groups), g_idx = k / G.
struct LayerInputs {
  at::Tensor codes, zeros, scales, g_idx;
};

LayerInputs random_inputs(const QuantSpec& spec, std::uint64_t seed) {
  at::manual_seed(seed);
  const std::int64_t n = spec.out_features, k = spec.in_features, groups = spec.groups();
  return {at::randint(0, spec.maxq() + 1, {n, k}, at::kInt), at::randint(1, spec.maxq() + 1, {n, groups}, at::kInt),
          at::rand({n, groups}, at::kFloat) * 0.1 + 0.01,
          at::arange(k, at::kInt).div(spec.group_length(), "floor").to(at::kInt)};
}

// FORMATS.md 1.2, written out for b = 2, 4, 8: word r of stream s holds values r * (32 / b) + j at bits b * j.
// `values` (streams, count) int32; returns (streams, count * b / 32) int32 words.
at::Tensor words_by_formula(const at::Tensor& values, int bits) {
  const auto v = values.accessor<int, 2>();
  const std::int64_t streams = values.size(0), per_word = 32 / bits, words = values.size(1) * bits / 32;
  at::Tensor out = at::zeros({streams, words}, at::kInt);
  auto o = out.accessor<int, 2>();
  for (std::int64_t s = 0; s < streams; ++s) {
    for (std::int64_t r = 0; r < words; ++r) {
      std::uint32_t word = 0;
      for (std::int64_t j = 0; j < per_word; ++j) word |= std::uint32_t(v[s][r * per_word + j]) << (bits * j);
      o[s][r] = std::int32_t(word);
    }
  }
  return out;
}

// qweight packs codes (N, K) along K: the words of each column, transposed to (K * b / 32, N).
at::Tensor qweight_by_formula(const LayerInputs& in, int bits) { return words_by_formula(in.codes, bits).t(); }
// qzeros packs the stored zero points (groups, N) along N: zero - 1 for v1, zero for v2 (FORMATS.md 1.5).
at::Tensor qzeros_by_formula(const LayerInputs& in, int bits, ZeroFormat f) {
  return words_by_formula((in.zeros - (f == ZeroFormat::V1 ? 1 : 0)).t().contiguous(), bits);
}

// W (K, N) = fp16(scale) * (code - zero), exact in float32, rounded once to fp16.
at::Tensor weights_by_formula(const LayerInputs& in) {
  const auto all = at::indexing::Slice();
  const at::Tensor g = in.g_idx.to(at::kLong);
  const at::Tensor s16 = in.scales.to(at::kHalf).to(at::kFloat);
  return (s16.index({all, g}) * (in.codes.to(at::kFloat) - in.zeros.to(at::kFloat).index({all, g}))).t().to(at::kHalf);
}

// Packs `spec` from random inputs, v1 and v2, and checks every buffer and the dequantized W against the formulas
// above, the unpacked codes and zero points, and a QuantLinear with the spec's buffer shapes.
void expect_packs_by_formula(QuantSpec spec, std::uint64_t seed) {
  SCOPED_TRACE(std::to_string(spec.bits) + " bits, K = " + std::to_string(spec.in_features) + ", N = " +
               std::to_string(spec.out_features) + ", group " + std::to_string(spec.group_size));
  ASSERT_NO_THROW(spec.validate("layer"));
  const LayerInputs in = random_inputs(spec, seed);
  const at::Tensor expected = weights_by_formula(in);
  for (ZeroFormat f : {ZeroFormat::V1, ZeroFormat::V2}) {
    spec.zero_format = f;
    const PackedWeights p = pack(in.codes, in.zeros, in.scales, in.g_idx, spec, at::kHalf, "layer");
    EXPECT_EQ(p.qweight.sizes().vec(),
              (std::vector<std::int64_t>{spec.in_features * spec.bits / 32, spec.out_features}));
    EXPECT_EQ(p.qzeros.sizes().vec(), (std::vector<std::int64_t>{spec.groups(), spec.out_features * spec.bits / 32}));
    EXPECT_TRUE(p.qweight.equal(qweight_by_formula(in, spec.bits)));
    EXPECT_TRUE(p.qzeros.equal(qzeros_by_formula(in, spec.bits, f)));
    ASSERT_NO_THROW(validate_packed(p, spec, "layer"));
    EXPECT_TRUE(unpack_codes(p.qweight, spec, "layer").equal(in.codes.t()));
    EXPECT_TRUE(unpack_zero_points(p.qzeros, spec, "layer").equal(in.zeros.t()));
    EXPECT_TRUE(dequantize_reference(p, spec, at::kHalf, "layer").equal(expected));
    EXPECT_TRUE(dequantize_weights(p, spec).equal(expected));
    QuantLinear module(spec, false, at::TensorOptions().dtype(at::kHalf));
    EXPECT_EQ(module.tensor("qweight").sizes(), p.qweight.sizes());
    EXPECT_EQ(module.tensor("qzeros").sizes(), p.qzeros.sizes());
    module.set_packed(p);
    EXPECT_TRUE(module.dequantize().equal(expected));
  }
}

// At 2, 4 and 8 bits K and N need only be multiples of 32 / b (16, 8, 4), not of 32 (FORMATS.md 1.1).
TEST(QuantLinear, PacksSizesThatAreNotMultiplesOf32) {
  expect_packs_by_formula(QuantSpec{24, 40, 4, 8, false}, 1);
  expect_packs_by_formula(QuantSpec{40, 24, 4, -1, false}, 2);
  expect_packs_by_formula(QuantSpec{16, 48, 2, -1, false}, 3);
  expect_packs_by_formula(QuantSpec{48, 16, 2, 16, false}, 4);
  expect_packs_by_formula(QuantSpec{12, 20, 8, 4, false}, 5);
  expect_packs_by_formula(QuantSpec{36, 12, 8, -1, false}, 6);
}

// Pins the real-world failure: models with intermediate_size 2736 (2736 % 32 = 16, 2736 % 8 = 0) quantized at 4 bits
// by GPTQModel, which packs qzeros (groups, N / 8) = (groups, 342) for gate/up_proj (N = 2736) and qweight (342, N)
// for down_proj (K = 2736, group 128: 22 groups, the last of 48 columns). AutoGPTQ's `N // 32 * b` would give 340
// (85 * 4, truncated), a buffer 16 values short; such a buffer is refused with both shapes in the message.
TEST(QuantLinear, GptqModelLayersWithSize2736) {
  const QuantSpec up{64, 2736, 4, 32, false};
  EXPECT_EQ(up.qzeros_cols(), 342);
  expect_packs_by_formula(up, 7);
  const QuantSpec down{2736, 32, 4, 128, false};
  EXPECT_EQ(down.qweight_rows(), 342);
  EXPECT_EQ(down.groups(), 22);
  expect_packs_by_formula(down, 8);

  QuantSpec spec = up;
  spec.zero_format = ZeroFormat::V1;
  const LayerInputs in = random_inputs(spec, 9);
  PackedWeights autogptq = pack(in.codes, in.zeros, in.scales, in.g_idx, spec, at::kHalf, "m.up_proj");
  autogptq.qzeros = autogptq.qzeros.narrow(1, 0, 2736 / 32 * 4).contiguous();
  const auto e = error_of<ShapeError>([&] { validate_packed(autogptq, spec, "m.up_proj"); });
  EXPECT_EQ(e.where().tensor, "m.up_proj.qzeros");
  EXPECT_NE(std::string(e.what()).find("expected [2, 342], found [2, 340]"), std::string::npos) << e.what();
}

// Sizes that do not fill whole words are refused naming the layer, the rule per width and the numbers.
TEST(QuantLinear, RefusesSizesThatDoNotFillWholeWords) {
  const std::string layer = "model.layers.0.mlp.up_proj";
  struct Case { QuantSpec spec; const char* found; };
  const Case cases[] = {
      {QuantSpec{64, 2740, 4, 64}, "N = 2740 is not a multiple of 8 (4-bit qzeros pack 8 zero points per int32)"},
      {QuantSpec{48, 64, 3, -1}, "K = 48 is not a multiple of 32 (3-bit qweight packs 32 inputs into 3 int32 words)"},
      {QuantSpec{64, 48, 3, -1},
       "N = 48 is not a multiple of 32 (3-bit qzeros pack 32 zero points into 3 int32 words)"},
      {QuantSpec{24, 64, 2, -1}, "K = 24 is not a multiple of 16 (2-bit qweight packs 16 inputs per int32)"},
      {QuantSpec{12, 42, 8, -1}, "N = 42 is not a multiple of 4 (8-bit qzeros pack 4 zero points per int32)"},
      {QuantSpec{324, 128, 4, -1}, "K = 324 is not a multiple of 8 (4-bit qweight packs 8 inputs per int32)"},
  };
  for (const Case& c : cases) {
    const auto e = error_of<ShapeError>([&] { c.spec.validate(layer); });
    EXPECT_EQ(e.where().layer, layer);
    EXPECT_EQ(e.found(), c.found);
    EXPECT_NE(e.rule().find("16 at 2 bits, 32 at 3 bits (32 values span 3 words), 8 at 4 bits, 4 at 8 bits"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW((QuantSpec{0, 64, 4, -1}.validate(layer)), ShapeError);
  EXPECT_NO_THROW((QuantSpec{96, 64, 3, 32}.validate(layer)));  // 3-bit multiples of 32 still pack
  // pack() refuses before packing: 3-bit K = 48 has no whole 3-word triples.
  const QuantSpec three{48, 64, 3, -1};
  const auto e = error_of<ShapeError>([&] {
    pack(at::zeros({64, 48}, at::kInt), at::ones({64, 1}, at::kInt), at::ones({64, 1}), at::zeros({48}, at::kInt),
         three, at::kHalf, layer);
  });
  EXPECT_EQ(e.where().layer, layer);
  EXPECT_NE(std::string(e.what()).find("K = 48 is not a multiple of 32"), std::string::npos) << e.what();
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

// K a multiple of 32 / b but not of 32: the kernel works in chunks of 32 inputs, so dequantize_weights takes the
// CPU reference and returns W on the GPU, the same bits.
TEST(GpuQuantLinear, DequantizeKNotAMultipleOf32) {
  QH_REQUIRE_CUDA();
  const c10::Device gpu(c10::kCUDA, 0);
  for (const QuantSpec& spec : {QuantSpec{40, 2736, 4, 8, false}, QuantSpec{2736, 64, 4, 128, false},
                                QuantSpec{48, 16, 2, 16, false}, QuantSpec{12, 20, 8, 4, false}}) {
    SCOPED_TRACE(std::to_string(spec.bits) + " bits, K = " + std::to_string(spec.in_features));
    const LayerInputs in = random_inputs(spec, 12);
    PackedWeights p = pack(in.codes, in.zeros, in.scales, in.g_idx, spec, at::kHalf, "layer");
    p = {p.qweight.to(gpu), p.qzeros.to(gpu), p.scales.to(gpu), p.g_idx.to(gpu)};
    const at::Tensor on_gpu = dequantize_weights(p, spec);
    EXPECT_TRUE(on_gpu.is_cuda());
    EXPECT_TRUE(on_gpu.cpu().equal(weights_by_formula(in)));
  }
}

}  // namespace
}  // namespace qh::quant_linear
