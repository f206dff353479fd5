// Skip rules and tied weights when loading quantized models (FORMATS.md section 4): bitsandbytes loading of
// StripedHyena crashed until `embedding_layer`, `poles` and `residues` were skipped, and its tie was declared as
// `tie_embeddings` rather than `tie_word_embeddings`; vLLM #9887's `kv_proj` that matched `qkv_proj`.
#include <gtest/gtest.h>

#include <fstream>

#include "conformance/model_case.h"
#include "conformance/testing.h"
#include "impl/checkpoint/writer.h"
#include "impl/core/errors.h"
#include "impl/format/safetensors.h"

namespace qh {
namespace {

using checkpoint::ModuleAction;
using checkpoint::SkipRules;
using testing::quantize_config;
using testing::quantized_model;
using testing::TempDir;
using testing::token_batch;

ModuleAction action_of(const std::vector<checkpoint::ModuleDecision>& plan, const std::string& module) {
  for (const auto& d : plan) {
    if (d.module == module) return d.action;
  }
  ADD_FAILURE() << module << " not in the plan";
  return ModuleAction::Plain;
}

const std::vector<std::string> kHyenaSkips = {"embedding_layer", "poles", "residues"};

// Exact names and whole components match; parts of a component never do (vLLM #9887, transformers' "key." substring).
TEST(SkipModuleLoading, KeysMatchWholeComponents) {
  EXPECT_TRUE(checkpoint::skip_key_matches("lm_head", "lm_head"));
  EXPECT_TRUE(checkpoint::skip_key_matches("model.layers.0.mlp.down_proj", "model.layers.0.mlp.down_proj"));
  EXPECT_TRUE(checkpoint::skip_key_matches("poles", "backbone.blocks.0.filter.poles"));
  EXPECT_TRUE(checkpoint::skip_key_matches("layers.1.mlp", "model.layers.1.mlp.up_proj"));
  EXPECT_FALSE(checkpoint::skip_key_matches("kv_proj", "model.layers.0.attn.qkv_proj"));
  EXPECT_FALSE(checkpoint::skip_key_matches("ayers.0", "model.layers.0.mlp"));
  EXPECT_FALSE(checkpoint::skip_key_matches("lm_head", "lm_head_extra"));
  EXPECT_FALSE(checkpoint::skip_key_matches("layers.1", "model.layers.10.mlp"));
  EXPECT_FALSE(checkpoint::skip_key_matches("", "lm_head"));
}

// Llama: Linears quantized, the output head and embeddings full precision, a tied pair kept together, and a
// user key skipping every down_proj.
TEST(SkipModuleLoading, LlamaPlan) {
  const auto m = model::build_model(model::tiny_llama_config(false, false, true), c10::Device(c10::kMeta));
  const auto plan = checkpoint::plan_modules(m, checkpoint::layout_from(quantize_config()), SkipRules({"down_proj"}));
  EXPECT_EQ(action_of(plan, "model.layers.0.self_attn.q_proj"), ModuleAction::Quantized);
  EXPECT_EQ(action_of(plan, "model.layers.1.mlp.down_proj"), ModuleAction::Skipped);
  EXPECT_EQ(action_of(plan, "model.embed_tokens"), ModuleAction::Tied);
  EXPECT_EQ(action_of(plan, "lm_head"), ModuleAction::Tied);
  const auto untied = model::build_model(model::tiny_llama_config(false, false, false), c10::Device(c10::kMeta));
  const auto plan2 = checkpoint::plan_modules(untied, checkpoint::layout_from(quantize_config()), {});
  EXPECT_EQ(action_of(plan2, "lm_head"), ModuleAction::Plain);  // lm_head: false
  EXPECT_EQ(action_of(plan2, "model.embed_tokens"), ModuleAction::Plain);
}

// Skipped modules load as full-precision Linears with their checkpoint weights; the rest as QuantLinear.
TEST(SkipModuleLoading, SkippedModulesLoadInFullPrecision) {
  auto qc = quantize_config();
  qc.modules_to_not_convert = {"down_proj"};
  auto m = quantized_model(model::tiny_llama_config(false, true, false), qc, SkipRules({"down_proj"}));
  TempDir dir;
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  auto loaded = checkpoint::load_checkpoint(dir.path(), {});
  EXPECT_EQ(model::find_module(*loaded.model.root, "model.layers.0.mlp.down_proj")->kind(), "Linear");
  EXPECT_EQ(model::find_module(*loaded.model.root, "model.layers.0.mlp.up_proj")->kind(), "QuantLinear");
  const at::Tensor tokens = token_batch(m.config.vocab_size, 4);
  EXPECT_TRUE(loaded.model.forward(tokens).equal(m.forward(tokens)));
}

// GPTQModel's dynamic "-:" rule leaves a module unquantized, like a skip key.
TEST(SkipModuleLoading, DynamicNegativeRuleSkips) {
  auto qc = quantize_config();
  format::DynamicRule rule;
  rule.pattern = R"(model\.layers\.1\.self_attn\.)";
  rule.skip = true;
  qc.dynamic = {rule};
  const auto m = model::build_model(model::tiny_llama_config(false, false, false), c10::Device(c10::kMeta));
  const auto plan = checkpoint::plan_modules(m, checkpoint::layout_from(qc), {});
  EXPECT_EQ(action_of(plan, "model.layers.1.self_attn.k_proj"), ModuleAction::Skipped);
  EXPECT_EQ(action_of(plan, "model.layers.0.self_attn.k_proj"), ModuleAction::Quantized);
}

// Without the skip list the hyena-like model is refused with the module, its kind, its tensors and the keys that
// would skip it (the bitsandbytes crash was a NoneType error deep inside deepcopy).
TEST(SkipModuleLoading, HyenaWithoutSkipsNamesTheModule) {
  const auto m = model::build_model(model::tiny_hyena_config(), c10::Device(c10::kMeta));
  try {
    checkpoint::plan_modules(m, checkpoint::layout_from(quantize_config()), {});
    FAIL() << "the modal filter was accepted for quantization";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.where().layer, "backbone.blocks.0.filter");
    EXPECT_NE(what.find("ParallelHyenaFilter"), std::string::npos) << what;
    EXPECT_NE(what.find("poles"), std::string::npos) << what;
    EXPECT_NE(what.find("residues"), std::string::npos) << what;
    EXPECT_NE(what.find("backbone.blocks.1.filter"), std::string::npos) << what;  // every such module, not the first
  }
}

// With ["embedding_layer", "poles", "residues"] the plan is complete: filters and embedding skipped, the tied
// unembed kept, every Linear quantized.
TEST(SkipModuleLoading, HyenaPlanWithSkips) {
  const auto m = model::build_model(model::tiny_hyena_config(), c10::Device(c10::kMeta));
  const auto plan = checkpoint::plan_modules(m, checkpoint::layout_from(quantize_config()), SkipRules(kHyenaSkips));
  EXPECT_EQ(action_of(plan, "backbone.embedding_layer"), ModuleAction::Skipped);
  EXPECT_EQ(action_of(plan, "backbone.unembed"), ModuleAction::Tied);
  EXPECT_EQ(action_of(plan, "backbone.blocks.1.filter"), ModuleAction::Skipped);
  EXPECT_EQ(action_of(plan, "backbone.blocks.1.projections"), ModuleAction::Quantized);
  EXPECT_EQ(action_of(plan, "backbone.blocks.0.mlp.l3"), ModuleAction::Quantized);
}

// The hyena-like checkpoint round trip: skip keys stored in the config (modules_to_not_convert), the tie declared
// only as `tie_embeddings`, unembed not stored and sharing the embedding's tensor after load, poles kept float32.
TEST(SkipModuleLoading, HyenaLoadsWithSkipsAndTieAlias) {
  auto qc = quantize_config();
  qc.modules_to_not_convert = kHyenaSkips;
  auto m = quantized_model(model::tiny_hyena_config(), qc, SkipRules(kHyenaSkips));
  TempDir dir;
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  const auto file = format::SafetensorsFile::open(dir.file("model.safetensors"));
  EXPECT_EQ(file->header().find("backbone.unembed.weight"), nullptr);
  EXPECT_NE(file->header().find("backbone.blocks.0.projections.qweight"), nullptr);

  auto loaded = checkpoint::load_checkpoint(dir.path(), {});
  EXPECT_EQ(loaded.model.config.tie_key, "tie_embeddings");
  auto* embed = model::find_module(*loaded.model.root, "backbone.embedding_layer");
  auto* unembed = model::find_module(*loaded.model.root, "backbone.unembed");
  EXPECT_EQ(embed->slot("weight"), unembed->slot("weight"));
  EXPECT_EQ(model::find_module(*loaded.model.root, "backbone.blocks.0.filter")->tensor("poles").scalar_type(),
            at::kFloat);
  const at::Tensor tokens = token_batch(m.config.vocab_size, 5);
  EXPECT_TRUE(loaded.model.forward(tokens).equal(m.forward(tokens)));
}

// tie_word_embeddings and tie_embeddings that disagree are refused, not resolved by guessing.
TEST(SkipModuleLoading, ConflictingTieKeysAreRefused) {
  const std::string json = R"({"model_type": "llama", "vocab_size": 8, "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 1, "tie_word_embeddings": false, "tie_embeddings": true})";
  EXPECT_THROW(format::parse_model_config(json, "config.json"), ConfigError);
  const std::string alias_only = R"({"model_type": "llama", "vocab_size": 8, "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 1, "tie_embeddings": true})";
  const auto c = format::parse_model_config(alias_only, "config.json");
  EXPECT_TRUE(c.tied);
  EXPECT_EQ(c.tie_key, "tie_embeddings");
}

}  // namespace
}  // namespace qh
