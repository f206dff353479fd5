// Bias through quantize -> save -> load: the failures of FORMATS.md 3.3 (AutoGPTQ #601/#610 "QuantLinear() does not
// have a parameter or a buffer named bias", the bias dropped for zero-valued or prequantized checkpoints, optimum
// #1827's random bias) and the v1/v2 zero-point conversion on the way.
#include <gtest/gtest.h>

#include <fstream>

#include "conformance/gpu_testing.h"
#include "conformance/model_case.h"
#include "conformance/testing.h"
#include "impl/checkpoint/writer.h"
#include "impl/cli/convert_command.h"
#include "impl/core/errors.h"
#include "impl/marlin/marlin_linear.h"

namespace qh {
namespace {

using testing::quantize_config;
using testing::quantized_model;
using testing::read_text;
using testing::set_zero_format;
using testing::tensor_at;
using testing::TempDir;
using testing::token_batch;

const char* kQProj = "model.layers.0.self_attn.q_proj";
const char* kDown = "model.layers.1.mlp.down_proj";

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

void replace_in_file(const std::string& path, const std::string& from, const std::string& to) {
  std::string text = read_text(path);
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from << " not in " << path;
  write_text(path, text.replace(at, from.size(), to));
}

// Pins AutoGPTQ #601/#610: a quantized layer with a bias saves it and gets it back, and the model computes the
// same logits. Equality is exact: the loaded buffers are the saved bytes and the forward is the same code.
TEST(BiasRoundtrip, QuantizeSaveLoadKeepsBiasAndLogits) {
  auto m = quantized_model(model::tiny_llama_config(true, true, false), quantize_config());
  const at::Tensor tokens = token_batch(m.config.vocab_size, 1);
  const at::Tensor before = m.forward(tokens);
  TempDir dir;
  const auto qc = quantize_config();
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  auto loaded = checkpoint::load_checkpoint(dir.path(), {});
  ASSERT_EQ(model::find_module(*loaded.model.root, kQProj)->kind(), "QuantLinear");
  const at::Tensor& bias = tensor_at(loaded.model, kQProj, "bias");
  EXPECT_TRUE(bias.equal(tensor_at(m, kQProj, "bias")));
  EXPECT_EQ(bias.scalar_type(), at::kHalf);
  EXPECT_GT(bias.abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(tensor_at(loaded.model, kDown, "bias").equal(tensor_at(m, kDown, "bias")));
  EXPECT_TRUE(loaded.model.forward(tokens).equal(before));
}

// Pins AutoGPTQ #554's first cause: a bias that is all zeros is still a bias (count_nonzero decided whether the
// Marlin layer got one). It must be saved, loaded and stay a registered buffer.
TEST(BiasRoundtrip, AllZeroBiasIsKept) {
  auto m = quantized_model(model::tiny_llama_config(true, false, false), quantize_config());
  model::find_module(*m.root, kQProj)->slot("bias")->value.zero_();
  TempDir dir;
  const auto qc = quantize_config();
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  auto loaded = checkpoint::load_checkpoint(dir.path(), {});
  const at::Tensor& bias = tensor_at(loaded.model, kQProj, "bias");
  EXPECT_EQ(bias.numel(), m.config.hidden_size);
  EXPECT_EQ(bias.count_nonzero().item<std::int64_t>(), 0);
}

// The same model saved as gptq (v1: zero - 1 stored) and gptq_v2, converted both ways, computes the same logits:
// the conversion changes words, never weights (FORMATS.md 1.5).
TEST(BiasRoundtrip, ThroughV1AndV2BothWays) {
  for (const int bits : {2, 3, 4, 8}) {
    SCOPED_TRACE(bits);
    auto m = quantized_model(model::tiny_llama_config(true, true, false), quantize_config(bits, 64, false));
    const at::Tensor tokens = token_batch(m.config.vocab_size, 2);
    const at::Tensor before = m.forward(tokens);
    set_zero_format(m, quant_linear::ZeroFormat::V2);
    TempDir v2_dir, v1_dir;
    const auto v2 = quantize_config(bits, 64, false, false, format::CheckpointFormat::GptqV2);
    checkpoint::save_checkpoint(m, v2_dir.path(), &v2);
    auto loaded_v2 = checkpoint::load_checkpoint(v2_dir.path(), {});
    EXPECT_TRUE(loaded_v2.model.forward(tokens).equal(before));

    // Asymmetric layers can hold a zero point of 0, which v1 cannot store: then saving as v1 must be refused.
    bool zero_point_zero = false;
    try {
      set_zero_format(loaded_v2.model, quant_linear::ZeroFormat::V1);
    } catch (const ConfigError& e) {
      zero_point_zero = true;
      EXPECT_NE(std::string(e.what()).find("gptq_v2"), std::string::npos) << e.what();
    }
    if (zero_point_zero) continue;
    const auto v1 = quantize_config(bits, 64, false);
    checkpoint::save_checkpoint(loaded_v2.model, v1_dir.path(), &v1);
    EXPECT_TRUE(checkpoint::load_checkpoint(v1_dir.path(), {}).model.forward(tokens).equal(before));
  }
}

// bfloat16 models keep a bfloat16 bias and bfloat16 scales: nothing is re-rounded through float16.
TEST(BiasRoundtrip, Bfloat16BiasKeepsItsDtype) {
  auto config = model::tiny_llama_config(true, false, false);
  config.dtype = "bfloat16";
  auto m = quantized_model(config, quantize_config());
  TempDir dir;
  const auto qc = quantize_config();
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  auto loaded = checkpoint::load_checkpoint(dir.path(), {});
  EXPECT_EQ(tensor_at(loaded.model, kQProj, "bias").scalar_type(), at::kBFloat16);
  EXPECT_EQ(tensor_at(loaded.model, kQProj, "scales").scalar_type(), at::kBFloat16);
  EXPECT_TRUE(tensor_at(loaded.model, kQProj, "bias").equal(tensor_at(m, kQProj, "bias")));
}

// Pins AutoGPTQ #610 (checkpoint has .bias, the layer has none): an error naming the tensor, not a silent drop.
TEST(BiasRoundtrip, CheckpointBiasIntoConfigWithoutBiasNamesTheTensor) {
  auto m = quantized_model(model::tiny_llama_config(true, false, false), quantize_config());
  TempDir dir;
  const auto qc = quantize_config();
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  replace_in_file(dir.file("config.json"), "\"attention_bias\": true", "\"attention_bias\": false");
  try {
    checkpoint::load_checkpoint(dir.path(), {});
    FAIL() << "a checkpoint bias without a slot was accepted";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.where().tensor, "model.layers.0.self_attn.k_proj.bias");  // the first by name
    EXPECT_NE(std::string(e.what()).find(std::string(kQProj) + ".bias"), std::string::npos) << e.what();
  }
  // accelerate's strict=False (AutoGPTQ PR #613) reports the key instead.
  checkpoint::LoadOptions lenient;
  lenient.strict = false;
  const auto loaded = checkpoint::load_checkpoint(dir.path(), lenient);
  EXPECT_EQ(loaded.report.unexpected.size(), 8u);  // q, k, v, o biases of both layers
}

// The reverse (optimum #1827: the model's bias left randomly initialized): a config with bias and a checkpoint
// without it names the missing tensor.
TEST(BiasRoundtrip, ConfigBiasWithoutCheckpointBiasNamesTheTensor) {
  auto m = quantized_model(model::tiny_llama_config(false, false, false), quantize_config());
  TempDir dir;
  const auto qc = quantize_config();
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  replace_in_file(dir.file("config.json"), "\"mlp_bias\": false", "\"mlp_bias\": true");
  try {
    checkpoint::load_checkpoint(dir.path(), {});
    FAIL() << "a missing bias was accepted";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.code(), FormatError::Code::MissingTensor);
    EXPECT_EQ(e.where().tensor, "model.layers.0.mlp.gate_proj.bias");
  }
}

// Pins the "bias dtype/device preserved" rule on a GPU: everything lands on CUDA, the bias and packed buffers are
// the saved values, and the CUDA dequantize kernel gives the CPU reference's weights bit for bit.
TEST(GpuBiasRoundtrip, LoadOnCudaKeepsBiasAndWeights) {
  QH_REQUIRE_CUDA();
  auto m = quantized_model(model::tiny_llama_config(true, true, false), quantize_config(4, 32, true, true));
  TempDir dir;
  const auto qc = quantize_config(4, 32, true, true);
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  checkpoint::LoadOptions on_gpu;
  on_gpu.device = c10::Device(c10::kCUDA, 0);
  auto gpu = checkpoint::load_checkpoint(dir.path(), on_gpu);
  const at::Tensor& bias = tensor_at(gpu.model, kQProj, "bias");
  EXPECT_TRUE(bias.is_cuda());
  EXPECT_EQ(bias.scalar_type(), at::kHalf);
  EXPECT_TRUE(bias.cpu().equal(tensor_at(m, kQProj, "bias")));
  const auto& q = dynamic_cast<const quant_linear::QuantLinear&>(*model::find_module(*gpu.model.root, kDown));
  const auto& ref = dynamic_cast<const quant_linear::QuantLinear&>(*model::find_module(*m.root, kDown));
  EXPECT_TRUE(q.dequantize().cpu().equal(ref.dequantize()));
  // Logits: float16 matmuls on different hardware. Each output is rounded to fp16 (2^-11 relative) and cuBLAS may
  // reduce in fp16; over 2 layers a 1e-2 relative bound on the largest logit is well above that and far below
  // what a lost bias (0.1 per output) or a shifted zero point (a full scale step) does.
  const at::Tensor tokens = token_batch(m.config.vocab_size, 3);
  const at::Tensor cpu_logits = m.forward(tokens);
  const at::Tensor gpu_logits = gpu.model.forward(tokens.cuda()).cpu();
  EXPECT_LE((gpu_logits - cpu_logits).abs().max().item<double>(), 1e-2 * cpu_logits.abs().max().item<double>());
}

}  // namespace
}  // namespace qh

namespace qh {
namespace {

// GPTQ -> Marlin keeps the bias (AutoGPTQ #551/#554: the converted layer's bias stayed on meta or was dropped when
// all zero) and the weights: the Marlin checkpoint loads and computes the GPTQ model's logits exactly (the same
// fp16 weights in the same order feed the same matmul), with and without act-order.
TEST(BiasRoundtrip, ConvertToMarlinKeepsBiasAndLogits) {
  for (const bool desc_act : {false, true}) {
    SCOPED_TRACE(desc_act ? "act-order" : "no act-order");
    const auto qc = quantize_config(4, 32, true, desc_act);
    auto m = quantized_model(model::tiny_llama_config(true, true, false), qc);
    model::find_module(*m.root, kDown)->slot("bias")->value.zero_();  // an all-zero bias is still a bias
    TempDir gptq, marlin;
    checkpoint::save_checkpoint(m, gptq.path(), &qc);
    cli::ConvertOptions o;
    o.in_dir = gptq.path();
    o.out_dir = marlin.path();
    ASSERT_EQ(cli::convert_command(o), 0);
    auto loaded = checkpoint::load_checkpoint(marlin.path(), {});
    EXPECT_EQ(model::find_module(*loaded.model.root, kQProj)->kind(), "MarlinLinear");
    EXPECT_TRUE(tensor_at(loaded.model, kQProj, "bias").equal(tensor_at(m, kQProj, "bias")));
    EXPECT_EQ(tensor_at(loaded.model, kDown, "bias").numel(), m.config.hidden_size);
    EXPECT_EQ(model::find_module(*loaded.model.root, kQProj)->slot("perm") != nullptr, desc_act);
    const at::Tensor tokens = token_batch(m.config.vocab_size, 8);
    EXPECT_TRUE(loaded.model.forward(tokens).equal(m.forward(tokens)));
  }
}

// Pins shapes real models have that Marlin cannot tile (vLLM: "output_size_per_partition = 2736 is not divisible by
// min_thread_n = 64"; tensor-parallel K slices with a partial last group): intermediate_size 96 gives gate/up_proj
// N = 96 (stored as 128 columns) and down_proj K = 96 with group 64 (2 scale rows, stored as 128 rows). Our GPTQ
// refuses a partial group, so the layers are packed from random codes (packed_model). convert -> save -> load keeps
// the padded buffers, the bias (N,) unpadded, W bit for bit and the logits exactly, with and without act-order.
TEST(BiasRoundtrip, ConvertToMarlinPadsShapesThatDoNotTile) {
  const char* kUp = "model.layers.0.mlp.up_proj";
  for (const bool desc_act : {false, true}) {
    SCOPED_TRACE(desc_act ? "act-order" : "no act-order");
    const auto qc = quantize_config(4, 64, true, desc_act);
    format::ModelConfig config = model::tiny_llama_config(true, true, false);
    config.intermediate_size = 96;
    auto m = testing::packed_model(config, qc);
    TempDir gptq, marlin;
    checkpoint::save_checkpoint(m, gptq.path(), &qc);
    cli::ConvertOptions o;
    o.in_dir = gptq.path();
    o.out_dir = marlin.path();
    ASSERT_EQ(cli::convert_command(o), 0);
    auto loaded = checkpoint::load_checkpoint(marlin.path(), {});
    EXPECT_EQ(tensor_at(loaded.model, kUp, "B").sizes().vec(), (std::vector<std::int64_t>{8, 256}));
    EXPECT_EQ(tensor_at(loaded.model, kUp, "s").sizes().vec(), (std::vector<std::int64_t>{2, 128}));
    EXPECT_TRUE(tensor_at(loaded.model, kUp, "bias").equal(tensor_at(m, kUp, "bias")));
    EXPECT_EQ(tensor_at(loaded.model, kDown, "B").sizes().vec(), (std::vector<std::int64_t>{8, 256}));
    EXPECT_EQ(tensor_at(loaded.model, kDown, "s").sizes().vec(), (std::vector<std::int64_t>{2, 128}));
    for (const char* layer : {kUp, kDown}) {
      const auto* q = dynamic_cast<const quant_linear::QuantLinear*>(model::find_module(*m.root, layer));
      const auto* p = dynamic_cast<const marlin::MarlinLinear*>(model::find_module(*loaded.model.root, layer));
      ASSERT_NE(p, nullptr) << layer;
      EXPECT_TRUE(p->dequantize().equal(q->dequantize())) << layer;
    }
    const at::Tensor tokens = token_batch(m.config.vocab_size, 9);
    EXPECT_TRUE(loaded.model.forward(tokens).equal(m.forward(tokens)));
  }
}

}  // namespace
}  // namespace qh
