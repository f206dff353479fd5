// Checkpoint interop: v1 ("gptq") vs v2 ("gptq_v2") zero points (FORMATS.md 1.5: loading one as the other shifts
// every weight by one scale step, the models that emit only "!!!!"), and `qharness verify`'s findings on damaged
// checkpoints. Cases against fixtures written by the real tools live beside these (see fixtures/interop/).
#include <gtest/gtest.h>

#include <fstream>

#include "conformance/model_case.h"
#include "conformance/testing.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/checkpoint/verify.h"
#include "impl/checkpoint/writer.h"
#include "impl/core/errors.h"

namespace qh {
namespace {

using testing::quantize_config;
using testing::quantized_model;
using testing::TempDir;
using testing::token_batch;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

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

void set_zero_format(model::Model& m, quant_linear::ZeroFormat to) {
  for (const auto& [name, module] : model::named_modules(*m.root)) {
    if (auto* q = dynamic_cast<quant_linear::QuantLinear*>(model::find_module(*m.root, name))) {
      q->set_zero_format(to, name);
    }
  }
}

// Rewrites model.safetensors without `drop` (and with `replace` swapped in).
void rewrite_tensors(const TempDir& dir, const std::string& drop,
                     const std::map<std::string, at::Tensor>& replace = {}) {
  auto all = checkpoint::load_all(dir.file("model.safetensors"), c10::kCPU);
  std::vector<std::pair<std::string, at::Tensor>> kept;
  for (auto& [name, t] : all) {
    if (name == drop) continue;
    const auto r = replace.find(name);
    kept.emplace_back(name, r == replace.end() ? t.clone() : r->second);
  }
  all.clear();  // release the mapping before replacing the file
  checkpoint::save_tensors(dir.file("model.safetensors"), kept, {{"format", "pt"}});
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

}  // namespace
}  // namespace qh
