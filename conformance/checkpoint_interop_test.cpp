// Checkpoint interop: v1 ("gptq") vs v2 ("gptq_v2") zero points (FORMATS.md 1.5: loading one as the other shifts
// every weight by one scale step, the models that emit only "!!!!"), and `qharness verify`'s findings on damaged
// checkpoints; and layers packed by the real tools (fixtures/interop/, written by fixtures/gen_gptq_interop.py with
// AutoGPTQ 0.7.1 and GPTQModel 2.2.0): our pack of their inputs equals their bytes, our dequantization and forward
// equal theirs, and the words they corrupt (v1 asymmetric zero points of 0) are refused, not read wrong.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "conformance/model_case.h"
#include "conformance/testing.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/checkpoint/verify.h"
#include "impl/checkpoint/writer.h"
#include "impl/core/errors.h"
#include "impl/format/safetensors.h"

namespace qh {
namespace {

using testing::quantize_config;
using testing::quantized_model;
using testing::read_text;
using testing::rewrite_tensors;
using testing::set_zero_format;
using testing::TempDir;
using testing::token_batch;

// Replaces every occurrence of `from` in the checkpoint's two config files.
void edit_configs(const TempDir& dir, const std::string& from, const std::string& to) {
  for (const char* name : {"quantize_config.json", "config.json"}) {
    std::string text = read_text(dir.file(name));
    std::size_t count = 0;
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()), ++count) {
      text.replace(at, from.size(), to);
    }
    ASSERT_GT(count, 0u) << from << " not in " << name;
    std::ofstream(dir.file(name)) << text;
  }
}

struct Saved {
  model::Model model;
  TempDir dir;
};

std::unique_ptr<Saved> saved_model(format::CheckpointFormat fmt, bool bias = true) {
  auto s = std::make_unique<Saved>();
  s->model = quantized_model(model::tiny_llama_config(bias, false, false), quantize_config());
  const auto qc = quantize_config(4, 32, true, false, fmt);
  if (fmt == format::CheckpointFormat::GptqV2) set_zero_format(s->model, quant_linear::ZeroFormat::V2);
  checkpoint::save_checkpoint(s->model, s->dir.path(), &qc);
  return s;
}

const char* kQProj = "model.layers.0.self_attn.q_proj";

// The same model as gptq (symmetric 4-bit stores 7) and gptq_v2 (stores 8) dequantizes to identical weights.
TEST(CheckpointInterop, V1AndV2DequantizeIdentically) {
  const auto v1 = saved_model(format::CheckpointFormat::Gptq);
  auto l1 = checkpoint::load_checkpoint(v1->dir.path(), {});
  const auto v2 = saved_model(format::CheckpointFormat::GptqV2);
  auto l2 = checkpoint::load_checkpoint(v2->dir.path(), {});
  const auto& q1 = dynamic_cast<const quant_linear::QuantLinear&>(*model::find_module(*l1.model.root, kQProj));
  const auto& q2 = dynamic_cast<const quant_linear::QuantLinear&>(*model::find_module(*l2.model.root, kQProj));
  EXPECT_TRUE(q1.tensor("qzeros").eq(0x77777777).all().item<bool>());
  EXPECT_TRUE(q2.tensor("qzeros").eq(std::int32_t(0x88888888u)).all().item<bool>());
  EXPECT_TRUE(q1.dequantize().equal(q2.dequantize()));
  const at::Tensor tokens = token_batch(l1.model.config.vocab_size, 6);
  EXPECT_TRUE(l1.model.forward(tokens).equal(l2.model.forward(tokens)));
}

// v2 words under a config that says gptq (v1): detected from the zero points, named, never loaded shifted.
TEST(CheckpointInterop, V2LoadedAsV1IsDetected) {
  const auto v2 = saved_model(format::CheckpointFormat::GptqV2);
  edit_configs(v2->dir, "\"gptq_v2\"", "\"gptq\"");
  try {
    checkpoint::load_checkpoint(v2->dir.path(), {});
    FAIL() << "v2 zero points were loaded as v1";
  } catch (const FormatError& e) {
    EXPECT_NE(e.where().tensor.find(".qzeros"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("every field stores 8"), std::string::npos) << e.what();
  }
  // And the reverse: v1 words under gptq_v2.
  const auto v1 = saved_model(format::CheckpointFormat::Gptq);
  edit_configs(v1->dir, "\"checkpoint_format\": \"gptq\"", "\"checkpoint_format\": \"gptq_v2\"");
  EXPECT_THROW(checkpoint::load_checkpoint(v1->dir.path(), {}), FormatError);
}

// A config silent about checkpoint_format (AutoGPTQ-era files): the stored zeros decide, and the note says so.
TEST(CheckpointInterop, SilentConfigIsSettledByTheZeroPoints) {
  const auto v2 = saved_model(format::CheckpointFormat::GptqV2);
  edit_configs(v2->dir, "\"checkpoint_format\": \"gptq_v2\",", "");
  const auto loaded = checkpoint::load_checkpoint(v2->dir.path(), {});
  ASSERT_FALSE(loaded.report.notes.empty());
  EXPECT_NE(loaded.report.notes.front().find("gptq_v2"), std::string::npos) << loaded.report.notes.front();
  const at::Tensor tokens = token_batch(v2->model.config.vocab_size, 7);
  EXPECT_TRUE(loaded.model.forward(tokens).equal(v2->model.forward(tokens)));
}

// verify: a checkpoint we wrote has no finding.
TEST(CheckpointInterop, VerifyCleanCheckpoint) {
  const auto s = saved_model(format::CheckpointFormat::Gptq);
  const auto report = checkpoint::verify_checkpoint(s->dir.path());
  EXPECT_EQ(report.layers.size(), 14u);  // 7 Linears x 2 layers
  for (const auto& f : report.findings) ADD_FAILURE() << f.layer << " " << f.check << ": " << f.message;
}

// verify: a bias dropped from one layer (the prequantized-bias loss) stands out against its siblings, and against
// the base model when one is given.
TEST(CheckpointInterop, VerifyFindsADroppedBias) {
  const auto s = saved_model(format::CheckpointFormat::Gptq);
  TempDir base;
  {
    auto plain = model::build_model(model::tiny_llama_config(true, false, false), c10::kCPU);
    model::init_random(plain, 7);  // the seed quantized_model used: the same biases
    checkpoint::save_checkpoint(plain, base.path(), nullptr);
  }
  rewrite_tensors(s->dir, "model.layers.1.self_attn.q_proj.bias");
  const auto alone = checkpoint::verify_checkpoint(s->dir.path());
  ASSERT_EQ(alone.findings.size(), 1u);
  EXPECT_EQ(alone.findings[0].layer, "model.layers.1.self_attn.q_proj");
  EXPECT_EQ(alone.findings[0].check, "bias");
  const auto with_base = checkpoint::verify_checkpoint(s->dir.path(), base.path());
  bool dropped = false;
  for (const auto& f : with_base.findings) dropped |= f.message.find("dropped") != std::string::npos;
  EXPECT_TRUE(dropped);
}

// verify: a changed bias (optimum #1827's random init) differs from the base model's.
TEST(CheckpointInterop, VerifyFindsAChangedBias) {
  const auto s = saved_model(format::CheckpointFormat::Gptq);
  TempDir base;
  auto plain = model::build_model(model::tiny_llama_config(true, false, false), c10::kCPU);
  model::init_random(plain, 7);
  checkpoint::save_checkpoint(plain, base.path(), nullptr);
  const std::string name = std::string(kQProj) + ".bias";
  rewrite_tensors(s->dir, "", {{name, at::randn({128}).to(at::kHalf)}});
  const auto report = checkpoint::verify_checkpoint(s->dir.path(), base.path());
  ASSERT_EQ(report.findings.size(), 1u);
  EXPECT_EQ(report.findings[0].layer, kQProj);
  EXPECT_NE(report.findings[0].message.find("differs"), std::string::npos);
}

// verify: config/tensor disagreement (bits), v2 words under gptq, and NaN scales are each reported by layer.
TEST(CheckpointInterop, VerifyFindsConfigAndTensorDefects) {
  const auto bits = saved_model(format::CheckpointFormat::Gptq);
  edit_configs(bits->dir, "\"bits\": 4", "\"bits\": 8");
  const auto r1 = checkpoint::verify_checkpoint(bits->dir.path());
  ASSERT_EQ(r1.findings.size(), 14u);
  EXPECT_NE(r1.findings[0].message.find("config says 8 bits"), std::string::npos) << r1.findings[0].message;

  const auto v2 = saved_model(format::CheckpointFormat::GptqV2);
  edit_configs(v2->dir, "\"gptq_v2\"", "\"gptq\"");
  const auto r2 = checkpoint::verify_checkpoint(v2->dir.path());
  ASSERT_EQ(r2.findings.size(), 14u);
  EXPECT_EQ(r2.findings[0].check, "tensors");

  const auto nan = saved_model(format::CheckpointFormat::Gptq);
  const std::string scales = std::string(kQProj) + ".scales";
  at::Tensor bad = checkpoint::load_all(nan->dir.file("model.safetensors"), c10::kCPU).at(scales).clone();
  bad[1][2] = NAN;
  rewrite_tensors(nan->dir, "", {{scales, bad}});
  const auto r3 = checkpoint::verify_checkpoint(nan->dir.path());
  ASSERT_EQ(r3.findings.size(), 1u);
  EXPECT_EQ(r3.findings[0].layer, kQProj);
  EXPECT_NE(r3.findings[0].message.find("finite"), std::string::npos) << r3.findings[0].message;
}

// One layer packed by a real tool, with the inputs it was given and its own dequantization and forward.
struct ToolLayer {
  std::string path, tool;
  std::map<std::string, at::Tensor> t;
  std::map<std::string, std::string> meta;
  quant_linear::QuantSpec spec;
  int count(const std::string& diagnostic) const {
    const std::string& d = meta.at("diagnostics");
    const auto at = d.find("\"" + diagnostic + "\": ");
    return at == std::string::npos ? 0 : std::stoi(d.substr(at + diagnostic.size() + 4));
  }
};

std::vector<ToolLayer> tool_layers() {
  std::vector<ToolLayer> out;
  for (const char* tool : {"auto-gptq", "gptqmodel"}) {
    const std::string dir = std::string(QH_SOURCE_DIR) + "/fixtures/interop/" + tool;
    std::vector<std::string> paths;
    for (const auto& e : std::filesystem::directory_iterator(dir)) paths.push_back(e.path().string());
    std::sort(paths.begin(), paths.end());
    for (const auto& path : paths) {
      ToolLayer l{path, tool, checkpoint::load_all(path, c10::kCPU), {}, {}};
      l.meta = format::SafetensorsFile::open(path)->header().metadata;
      l.spec = {std::stoll(l.meta.at("in_features")), std::stoll(l.meta.at("out_features")), std::stoi(l.meta.at("bits")),
                std::stoi(l.meta.at("group_size")), l.meta.at("sym") == "true", l.meta.at("desc_act") == "true",
                l.meta.at("zero_format") == "v1" ? quant_linear::ZeroFormat::V1 : quant_linear::ZeroFormat::V2};
      out.push_back(std::move(l));
    }
  }
  return out;
}

quant_linear::PackedWeights tool_packed(const ToolLayer& l) {
  return {l.t.at("layer.qweight"), l.t.at("layer.qzeros"), l.t.at("layer.scales"), l.t.at("layer.g_idx")};
}

// Our pack of the tool's own inputs (fake-quantized fp16 weight, fp32 scales and zeros, g_idx) reproduces its
// qweight, scales and g_idx bit for bit with the tool's rounding rule (FORMATS.md 1.4), and its qzeros wherever the
// tool wrote a valid word; where AutoGPTQ ORs a v1 "-1" into a word (asymmetric zero point 0), we refuse.
TEST(CheckpointInterop, OurPackOfToolInputsEqualsToolBytes) {
  const auto layers = tool_layers();
  ASSERT_EQ(layers.size(), 28u);
  for (const ToolLayer& l : layers) {
    SCOPED_TRACE(l.path);
    const auto rounding = l.tool == "auto-gptq" ? quant_linear::PackRounding::AutoGptq
                                                : quant_linear::PackRounding::GptqModel;
    const at::Tensor codes = quant_linear::codes_from_fake_quant(l.t.at("input.weight"), l.t.at("input.scales"),
                                                                 l.t.at("input.zeros"), l.t.at("input.g_idx"), l.spec,
                                                                 at::kHalf, rounding, "layer");
    const bool zero_point_zero = l.count("zero_points_equal_0") > 0;
    const auto ours = [&] {
      return quant_linear::pack(codes, l.t.at("input.zeros"), l.t.at("input.scales"), l.t.at("input.g_idx"), l.spec,
                                at::kHalf, "layer");
    };
    if (l.spec.zero_format == quant_linear::ZeroFormat::V1 && zero_point_zero) {
      EXPECT_THROW(ours(), ConfigError);
      // The qweight words do not depend on the zero points: pack them as v2 to compare.
      quant_linear::QuantSpec v2 = l.spec;
      v2.zero_format = quant_linear::ZeroFormat::V2;
      EXPECT_TRUE(quant_linear::pack(codes, l.t.at("input.zeros"), l.t.at("input.scales"), l.t.at("input.g_idx"), v2,
                                     at::kHalf, "layer").qweight.equal(l.t.at("layer.qweight")));
      continue;
    }
    const quant_linear::PackedWeights p = ours();
    EXPECT_TRUE(p.qweight.equal(l.t.at("layer.qweight")));
    EXPECT_TRUE(p.qzeros.equal(l.t.at("layer.qzeros")));
    EXPECT_TRUE(p.scales.equal(l.t.at("layer.scales")));
    EXPECT_TRUE(p.g_idx.equal(l.t.at("layer.g_idx")));
  }
}

// Our unpack + dequantization of the tool's bytes equals the tool's own dequantization exactly (both form
// scale * (q - z) once and round to fp16), and our forward equals its forward within fp16 output rounding: the tool
// ran the same fp16 matmul on the CPU; 4 ulps of the largest |y| (4 * 2^-11 relative) covers a different summation
// order and the bias add, and is far below one quantization step. Corrupt v1 words are refused instead.
TEST(CheckpointInterop, OurDequantizationEqualsTheTools) {
  for (const ToolLayer& l : tool_layers()) {
    SCOPED_TRACE(l.path);
    const quant_linear::PackedWeights p = tool_packed(l);
    if (l.count("qzeros_fields_wrong") > 0) {
      EXPECT_THROW(quant_linear::validate_packed(p, l.spec, "layer", l.path), FormatError);
      continue;
    }
    ASSERT_NO_THROW(quant_linear::validate_packed(p, l.spec, "layer", l.path));
    const at::Tensor w = quant_linear::dequantize_reference(p, l.spec, at::kHalf, "layer");
    EXPECT_TRUE(w.t().to(at::kFloat).equal(l.t.at("expected.weight")));
    quant_linear::QuantLinear module(l.spec, l.t.count("layer.bias") != 0, at::TensorOptions().dtype(at::kHalf));
    module.set_packed(p);
    if (l.t.count("layer.bias")) module.slot("bias")->value = l.t.at("layer.bias");
    const at::Tensor y = module.forward(l.t.at("expected.x")).to(at::kFloat);
    const at::Tensor expected = l.t.at("expected.y").to(at::kFloat);
    EXPECT_LE((y - expected).abs().max().item<double>(), 4 * std::ldexp(expected.abs().max().item<double>(), -11));
  }
}

// GPTQModel saves gptq (v1) by subtracting word constants from v2 words (FORMATS.md 1.5): exact for 2/4/8-bit
// symmetric layers, but a zero point of 0 borrows from its neighbour and v2.2.0's 3-bit constants are wrong. Read
// field by field under the layer's config, the good words give the v2 words back and the damaged ones are refused
// (a field of all ones, or a symmetric layer whose zero points are not all 2^(b-1)), never read as shifted weights.
TEST(CheckpointInterop, GptqModelV1WordsReadFieldByField) {
  for (const ToolLayer& l : tool_layers()) {
    if (l.tool != "gptqmodel") continue;
    SCOPED_TRACE(l.path);
    quant_linear::QuantSpec v1 = l.spec;
    v1.zero_format = quant_linear::ZeroFormat::V1;
    quant_linear::PackedWeights saved = tool_packed(l);
    saved.qzeros = l.t.at("saved_v1.qzeros");
    if (l.count("saved_v1_fields_wrong_read_as_v1") > 0) {
      EXPECT_THROW(quant_linear::validate_packed(saved, v1, "layer", l.path), FormatError);
    } else {
      ASSERT_NO_THROW(quant_linear::validate_packed(saved, v1, "layer", l.path));
      EXPECT_TRUE(quant_linear::convert_qzeros(saved.qzeros, v1, quant_linear::ZeroFormat::V2, "layer")
                      .equal(l.t.at("layer.qzeros")));
    }
  }
}

}  // namespace
}  // namespace qh
