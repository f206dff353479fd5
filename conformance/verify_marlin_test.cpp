// `qharness verify` on Marlin checkpoints (checkpoint_format "marlin", written by `qharness convert --to marlin`;
// docs/marlin.md): a converted checkpoint verifies clean, padded or not, with and without act-order, with and
// without the base model; a damaged copy (B of the wrong shape, a nonzero padded scale, a padded code other than
// 8, a perm that is not a permutation, a dropped bias) gets the finding that names the layer, the rule and the
// numbers.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "conformance/model_case.h"
#include "conformance/testing.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/checkpoint/verify.h"
#include "impl/checkpoint/writer.h"
#include "impl/cli/convert_command.h"
#include "impl/cli/verify_command.h"
#include "impl/marlin/layout.h"

namespace qh {
namespace {

using testing::quantize_config;
using testing::read_text;
using testing::rewrite_tensors;
using testing::TempDir;

const char* kQProj = "model.layers.0.self_attn.q_proj";
const char* kUp = "model.layers.0.mlp.up_proj";      // padded case: K = 128, N = 96 stored as N' = 128
const char* kDown = "model.layers.1.mlp.down_proj";  // padded case: K = 96 stored as K' = 128, N = 128

struct Converted {
  TempDir gptq, marlin, base;
};

// A GPTQ checkpoint of the tiny llama (biases everywhere) converted to Marlin, and the unquantized base model it was
// made from (same seed: same weights' shapes and biases). `padded`: intermediate_size 96 with group 64, packed from
// random codes as ConvertToMarlinPadsShapesThatDoNotTile does; else GPTQ-quantized with group 32 (nothing padded).
std::unique_ptr<Converted> converted(bool padded, bool desc_act) {
  auto c = std::make_unique<Converted>();
  format::ModelConfig config = model::tiny_llama_config(true, true, false);
  if (padded) config.intermediate_size = 96;
  const auto qc = quantize_config(4, padded ? 64 : 32, true, desc_act);
  const model::Model m = padded ? testing::packed_model(config, qc) : testing::quantized_model(config, qc);
  checkpoint::save_checkpoint(m, c->gptq.path(), &qc);
  cli::ConvertOptions o;
  o.in_dir = c->gptq.path();
  o.out_dir = c->marlin.path();
  EXPECT_EQ(cli::convert_command(o), 0);
  model::Model plain = model::build_model(config, c10::kCPU);
  model::init_random(plain, 7);  // the seed quantized_model and packed_model use
  checkpoint::save_checkpoint(plain, c->base.path(), nullptr);
  return c;
}

at::Tensor stored(const TempDir& dir, const std::string& name) {
  return checkpoint::load_all(dir.file("model.safetensors"), c10::kCPU).at(name).clone();
}

std::string listed(const checkpoint::VerifyReport& r) {
  std::string out;
  for (const auto& f : r.findings) out += f.layer + " [" + f.check + "]: " + f.message + "\n";
  return out;
}

// The report has exactly one finding: on `layer`, of `check`, its message holding each of `parts`.
void expect_one_finding(const checkpoint::VerifyReport& r, const std::string& layer, const std::string& check,
                        const std::vector<std::string>& parts) {
  ASSERT_EQ(r.findings.size(), 1u) << listed(r);
  EXPECT_EQ(r.findings[0].layer, layer);
  EXPECT_EQ(r.findings[0].check, check) << r.findings[0].message;
  for (const auto& part : parts) EXPECT_NE(r.findings[0].message.find(part), std::string::npos) << listed(r);
}

// A converted checkpoint has no finding: both layouts, with and without act-order, with and without the base model.
// Without the base, the note says which unpadded extents were unknown; with it, there is none.
TEST(VerifyMarlin, ConvertedCheckpointIsClean) {
  for (const bool padded : {false, true}) {
    for (const bool desc_act : {false, true}) {
      SCOPED_TRACE(std::string(padded ? "padded" : "tiles") + (desc_act ? ", act-order" : ""));
      const auto c = converted(padded, desc_act);
      const auto alone = checkpoint::verify_checkpoint(c->marlin.path());
      EXPECT_EQ(alone.layers.size(), 14u);  // 7 Linears x 2 layers
      EXPECT_TRUE(alone.findings.empty()) << listed(alone);
      // Every layer has a bias (N known); K is known from perm exactly with act-order.
      EXPECT_EQ(alone.notes.size(), desc_act ? 0u : 1u);
      for (const auto& note : alone.notes) EXPECT_NE(note.find("--base"), std::string::npos) << note;
      const auto with_base = checkpoint::verify_checkpoint(c->marlin.path(), c->base.path());
      EXPECT_EQ(with_base.layers.size(), 14u);
      EXPECT_TRUE(with_base.findings.empty()) << listed(with_base);
      EXPECT_TRUE(with_base.notes.empty());
    }
  }
}

// `qharness verify` on a converted checkpoint: exit 0, a passing check per layer; a damaged one exits 1.
TEST(VerifyMarlin, VerifyCommandExitStatus) {
  const auto c = converted(true, true);
  cli::VerifyOptions v;
  v.path = c->marlin.path();
  v.base = c->base.path();
  v.out_dir = c->gptq.file("verify");
  EXPECT_EQ(cli::verify_command(v), 0);
  auto json = nlohmann::json::parse(read_text(v.out_dir + "/results.json"));
  EXPECT_EQ(json["summary"]["pass"], 14);
  EXPECT_EQ(json["summary"]["fail"], 0);
  rewrite_tensors(c->marlin, std::string(kDown) + ".perm");
  EXPECT_EQ(cli::verify_command(v), 1);
  json = nlohmann::json::parse(read_text(v.out_dir + "/results.json"));
  EXPECT_EQ(json["summary"]["fail"], 1);
  EXPECT_EQ(json["checks"][0]["name"], std::string("verify/") + kDown + "/tensors");
}

// B of the wrong shape: named with the layer's K, N, group size and the padded shape it needs.
TEST(VerifyMarlin, FindsBOfTheWrongShape) {
  const auto c = converted(true, false);
  const std::string b = std::string(kUp) + ".B";
  rewrite_tensors(c->marlin, "", {{b, stored(c->marlin, b).narrow(0, 0, 4).contiguous()}});
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path(), c->base.path()), kUp, "tensors",
                     {b + " is [4, 256]", "K = 128 (the base model)", "N = 96 (the base model)", "group_size 64",
                      "N' = 128", "expected (K'/16, 2N') = [8, 256]"});
  // Without the base, K is taken from B (64 inputs: one group), so the two scale rows no longer fit.
  const auto alone = checkpoint::verify_checkpoint(c->marlin.path());
  ASSERT_EQ(alone.findings.size(), 1u) << listed(alone);
  EXPECT_EQ(alone.findings[0].layer, kUp);
  EXPECT_NE(alone.findings[0].message.find("expected: [1, 128]"), std::string::npos) << listed(alone);
}

// A padded scale column (N = 96 .. 127 of up_proj) that is not 0.
TEST(VerifyMarlin, FindsANonzeroPaddedScale) {
  const auto c = converted(true, false);
  const std::string s = std::string(kUp) + ".s";
  at::Tensor scales = marlin::unpermute_scales(stored(c->marlin, s), true, kUp);
  scales[1][100] = 0.5;
  rewrite_tensors(c->marlin, "", {{s, marlin::permute_scales(scales, true, kUp)}});
  const std::vector<std::string> parts{"padded columns 96..127 of " + s + " must be 0", "1 are not",
                                       "s[1, 100] = 0.5"};
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path(), c->base.path()), kUp, "padding", parts);
  // The bias tells N without the base.
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path()), kUp, "padding", parts);
}

// A padded code other than 8 (a word other than 0x88888888): in a padded column of up_proj and in a padded row of
// down_proj (K = 96 of 128), with act-order (padded rows follow the K permuted ones).
TEST(VerifyMarlin, FindsAPaddedCodeOtherThan8) {
  const auto c = converted(true, true);
  const std::string up = std::string(kUp) + ".B", down = std::string(kDown) + ".B";
  at::Tensor up_codes = marlin::unpack_weights(stored(c->marlin, up), 128, 128, kUp);
  at::Tensor down_codes = marlin::unpack_weights(stored(c->marlin, down), 128, 128, kDown);
  ASSERT_TRUE(up_codes.narrow(1, 96, 32).eq(8).all().item<bool>());
  ASSERT_TRUE(down_codes.narrow(0, 96, 32).eq(8).all().item<bool>());
  up_codes[5][100] = 7;
  down_codes[100][3] = 0;
  const at::Tensor up_words = marlin::pack_weights(up_codes, kUp);
  EXPECT_EQ((up_words != std::int32_t(0x88888888u)).sum().item<std::int64_t>(),
            (stored(c->marlin, up) != std::int32_t(0x88888888u)).sum().item<std::int64_t>() + 1);
  rewrite_tensors(c->marlin, "", {{up, up_words}, {down, marlin::pack_weights(down_codes, kDown)}});
  const auto r = checkpoint::verify_checkpoint(c->marlin.path(), c->base.path());
  ASSERT_EQ(r.findings.size(), 2u) << listed(r);
  std::map<std::string, checkpoint::Finding> by_layer;
  for (const auto& f : r.findings) by_layer[f.layer] = f;
  ASSERT_EQ(by_layer.count(kUp), 1u) << listed(r);
  ASSERT_EQ(by_layer.count(kDown), 1u) << listed(r);
  EXPECT_EQ(by_layer[kUp].check, "padding");
  EXPECT_NE(by_layer[kUp].message.find("padded columns 96..127 of " + up + " must hold code 8"), std::string::npos)
      << listed(r);
  EXPECT_NE(by_layer[kUp].message.find("N = 96 padded to 128): 1 codes differ, the first at [5, 100] = 7"),
            std::string::npos)
      << listed(r);
  EXPECT_EQ(by_layer[kDown].check, "padding");
  EXPECT_NE(by_layer[kDown].message.find("padded rows 96..127 of " + down), std::string::npos) << listed(r);
  EXPECT_NE(by_layer[kDown].message.find("[100, 3] = 0"), std::string::npos) << listed(r);
}

// A perm with a repeated entry, and one out of range; a perm missing under desc_act; a perm without desc_act.
TEST(VerifyMarlin, FindsAPermThatIsNotAPermutation) {
  const auto c = converted(true, true);
  const std::string name = std::string(kDown) + ".perm";
  const at::Tensor perm = stored(c->marlin, name);
  at::Tensor twice = perm.clone();
  twice[1] = perm[0].item<int>();
  rewrite_tensors(c->marlin, "", {{name, twice}});
  const std::string first = std::to_string(perm[0].item<int>()), lost = std::to_string(perm[1].item<int>());
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path(), c->base.path()), kDown, "perm",
                     {name + " is not a permutation of 0..95", first + " appears 2 times and " + lost + " never"});
  at::Tensor outside = perm.clone();
  outside[7] = 96;
  rewrite_tensors(c->marlin, "", {{name, outside}});
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path()), kDown, "perm", {"1 entries are outside it"});
  rewrite_tensors(c->marlin, name);
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path(), c->base.path()), kDown, "tensors",
                     {"missing tensor " + name, "desc_act: true"});

  const auto plain = converted(true, false);
  rewrite_tensors(plain->marlin, "", {{name, at::arange(96, at::kInt)}});
  expect_one_finding(checkpoint::verify_checkpoint(plain->marlin.path(), plain->base.path()), kDown, "tensors",
                     {name + " is stored but desc_act is false"});
}

// A dropped bias: against the base model ("dropped") and, without it, against the layer's siblings.
TEST(VerifyMarlin, FindsADroppedBias) {
  const auto c = converted(true, false);
  rewrite_tensors(c->marlin, std::string(kQProj) + ".bias");
  const auto with_base = checkpoint::verify_checkpoint(c->marlin.path(), c->base.path());
  bool dropped = false;
  for (const auto& f : with_base.findings) {
    EXPECT_EQ(f.layer, kQProj) << listed(with_base);
    EXPECT_EQ(f.check, "bias");
    dropped |= f.message.find("the base model has a bias that the checkpoint dropped") != std::string::npos;
  }
  EXPECT_TRUE(dropped) << listed(with_base);
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path()), kQProj, "bias", {"lacks a bias unlike 1 other"});
  // A bias of the wrong length, against the base model's N.
  const std::string bias = std::string(kUp) + ".bias";
  rewrite_tensors(c->marlin, "", {{bias, stored(c->marlin, bias).narrow(0, 0, 64).contiguous()}});
  const auto wrong = checkpoint::verify_checkpoint(c->marlin.path(), c->base.path());
  bool length = false;
  for (const auto& f : wrong.findings) length |= f.layer == kUp && f.message == "bias has 64 entries for 96 outputs";
  EXPECT_TRUE(length) << listed(wrong);
}

// Scales: float32 (Marlin's GEMM takes fp16/bf16), NaN, and a zero in a real column.
TEST(VerifyMarlin, FindsBadScales) {
  const auto c = converted(false, false);
  const std::string s = std::string(kQProj) + ".s";
  const at::Tensor good = stored(c->marlin, s);
  rewrite_tensors(c->marlin, "", {{s, good.to(at::kFloat)}});
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path()), kQProj, "scales",
                     {s + " is Float", "float16 or bfloat16"});
  at::Tensor nan = good.clone();
  nan[2][3] = NAN;
  rewrite_tensors(c->marlin, "", {{s, nan}});
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path()), kQProj, "scales", {"must be finite"});
  at::Tensor zero = good.clone();
  zero[2][3] = 0;
  rewrite_tensors(c->marlin, "", {{s, zero}});
  expect_one_finding(checkpoint::verify_checkpoint(c->marlin.path()), kQProj, "scales",
                     {"1 scales of the 128 real columns are zero or negative"});
}

// The config must describe what Marlin holds: a config edited to 8 bits is a finding on every layer.
TEST(VerifyMarlin, FindsConfigDefects) {
  const auto c = converted(false, false);
  for (const char* name : {"quantize_config.json", "config.json"}) {
    std::string text = read_text(c->marlin.file(name));
    const auto at = text.find("\"bits\": 4");
    ASSERT_NE(at, std::string::npos) << name;
    std::ofstream(c->marlin.file(name)) << text.replace(at, 9, "\"bits\": 8");
  }
  const auto r = checkpoint::verify_checkpoint(c->marlin.path());
  ASSERT_EQ(r.findings.size(), 14u) << listed(r);
  EXPECT_EQ(r.findings[0].check, "config");
  EXPECT_NE(r.findings[0].message.find("config says 8 bits but Marlin's B holds 4-bit codes"), std::string::npos)
      << listed(r);
}

}  // namespace
}  // namespace qh
