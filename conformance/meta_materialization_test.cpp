// Modules built on `meta` and materialized by the loader: the AutoGPTQ Marlin bias bug (PR #554, issue #551: a
// layer created under torch.device("meta") whose bias.copy_() did nothing) and #719 ('NoneType' object has no
// attribute 'device' when checking a layer without bias for meta tensors).
#include <gtest/gtest.h>

#include "conformance/gpu_testing.h"
#include "conformance/model_case.h"
#include "conformance/testing.h"
#include "impl/checkpoint/writer.h"
#include "impl/core/errors.h"
#include "impl/marlin/marlin_linear.h"

namespace qh {
namespace {

using testing::quantize_config;
using testing::quantized_model;
using testing::TempDir;

// A model built on meta holds no data: every tensor is meta, and has shape and dtype only.
TEST(MetaMaterialization, BuildOnMetaAllocatesNothing) {
  const auto m = model::build_model(model::tiny_llama_config(true, true, true), c10::Device(c10::kMeta));
  std::int64_t elements = 0;
  for (const auto& t : model::named_tensors(*m.root)) {
    EXPECT_TRUE(t.slot->value.is_meta()) << t.name;
    elements += t.slot->value.numel();
  }
  EXPECT_GT(elements, 100'000);  // the shapes are all there
}

// What the seed bug relied on: torch's copy_ into a meta tensor returns without error and copies nothing. If this
// ever starts throwing, torch fixed the hazard; until then our loader must never copy into meta.
TEST(MetaMaterialization, TorchCopyIntoMetaIsSilentNoOp) {
  at::Tensor bias = at::empty({8}, at::TensorOptions().device(c10::kMeta).dtype(at::kHalf));
  EXPECT_NO_THROW(bias.copy_(at::ones({8}, at::kHalf)));
  EXPECT_TRUE(bias.is_meta());
}

// Our copy refuses a meta destination with the tensor's name instead.
TEST(MetaMaterialization, CopyIntoMetaIsRefused) {
  quant_linear::QuantSpec spec{128, 64, 4, 32, true, false, quant_linear::ZeroFormat::V1};
  quant_linear::QuantLinear layer(spec, true, at::TensorOptions().device(c10::kMeta).dtype(at::kHalf));
  at::Tensor& bias = layer.slot("bias")->value;
  try {
    model::copy_into(bias, at::ones({64}, at::kHalf), "layer.bias");
    FAIL() << "copy into meta accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.where().tensor, "layer.bias");
    EXPECT_NE(std::string(e.what()).find("meta"), std::string::npos);
  }
}

// Once materialized, a copy into the bias takes effect.
TEST(MetaMaterialization, CopyIntoMaterializedBiasTakesEffect) {
  quant_linear::QuantSpec spec{128, 64, 4, 32, true, false, quant_linear::ZeroFormat::V1};
  quant_linear::QuantLinear layer(spec, true, at::TensorOptions().dtype(at::kHalf));
  const at::Tensor values = at::arange(64, at::kFloat).to(at::kHalf);
  model::copy_into(layer.slot("bias")->value, values, "layer.bias");
  EXPECT_TRUE(layer.tensor("bias").equal(values));
}

// A layer without bias has no bias entry at all (never a None that later code dereferences, #719).
TEST(MetaMaterialization, LayerWithoutBiasHasNoBiasEntry) {
  quant_linear::QuantSpec spec{128, 64, 4, 32, true, false, quant_linear::ZeroFormat::V1};
  quant_linear::QuantLinear layer(spec, false, at::TensorOptions().device(c10::kMeta).dtype(at::kHalf));
  EXPECT_EQ(layer.slot("bias"), nullptr);
  EXPECT_THROW(layer.tensor("bias"), ConfigError);
}

// The loader builds on meta and leaves nothing there: every parameter and buffer of a quantized model (QuantLinear
// buffers, plain weights, norms, the tied head) is on the CPU with real data.
TEST(MetaMaterialization, LoaderMaterializesEveryTensor) {
  auto m = quantized_model(model::tiny_llama_config(true, true, true), quantize_config());
  TempDir dir;
  const auto qc = quantize_config();
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  const auto loaded = checkpoint::load_checkpoint(dir.path(), {});
  std::size_t count = 0;
  for (const auto& t : model::named_tensors(*loaded.model.root)) {
    const at::Tensor& v = t.slot->value;
    EXPECT_FALSE(v.is_meta()) << t.name;
    EXPECT_TRUE(v.is_cpu()) << t.name;
    EXPECT_NE(v.data_ptr(), nullptr) << t.name;
    ++count;
  }
  EXPECT_EQ(count, model::named_tensors(*m.root).size());
  EXPECT_NO_THROW(checkpoint::check_materialized(loaded.model, c10::kCPU));
  // On the CPU, tensors whose dtype matches are views of the file mapping: no byte was copied.
  EXPECT_EQ(loaded.report.bytes_copied, 0u);
  EXPECT_GT(loaded.report.bytes_viewed, 0u);
}

// check_materialized names a tensor left on meta.
TEST(MetaMaterialization, LeftoverMetaTensorIsNamed) {
  auto m = model::build_model(model::tiny_llama_config(false, false, false), c10::kCPU);
  model::find_module(*m.root, "model.norm")->slot("weight")->value = at::empty({128}, at::TensorOptions().device(c10::kMeta));
  try {
    checkpoint::check_materialized(m, c10::kCPU);
    FAIL() << "meta tensor not detected";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.where().tensor, "model.norm.weight");
  }
}

// Materialization on CUDA: every tensor on the GPU with storage, none on meta or left on the CPU.
TEST(GpuMetaMaterialization, LoaderMaterializesOnCuda) {
  QH_REQUIRE_CUDA();
  auto m = quantized_model(model::tiny_llama_config(true, true, true), quantize_config());
  TempDir dir;
  const auto qc = quantize_config();
  checkpoint::save_checkpoint(m, dir.path(), &qc);
  checkpoint::LoadOptions on_gpu;
  on_gpu.device = c10::Device(c10::kCUDA, 0);
  const auto loaded = checkpoint::load_checkpoint(dir.path(), on_gpu);
  for (const auto& t : model::named_tensors(*loaded.model.root)) {
    EXPECT_TRUE(t.slot->value.is_cuda()) << t.name;
  }
  EXPECT_NO_THROW(checkpoint::check_materialized(loaded.model, on_gpu.device));
}

}  // namespace
}  // namespace qh

namespace qh {
namespace {

std::unique_ptr<quant_linear::QuantLinear> quantized_layer(bool bias, const c10::Device& device = c10::kCPU) {
  const quant_linear::QuantSpec spec{256, 128, 4, 64, true, true, quant_linear::ZeroFormat::V1};
  at::manual_seed(3);
  auto layer = std::make_unique<quant_linear::QuantLinear>(spec, bias,
                                                           at::TensorOptions().dtype(at::kHalf).device(device));
  if (!device.is_meta()) {
    const at::Tensor g_idx = at::randperm(256, at::kLong).div(64, "floor").to(at::kInt);
    layer->set_packed(quant_linear::pack(at::randint(16, {128, 256}, at::kInt), at::full({128, 4}, 8),
                                         at::rand({128, 4}) + 0.01, g_idx, spec, at::kHalf, "layer"));
    if (bias) layer->slot("bias")->value = at::randn({128}).to(at::kHalf);
  }
  return layer;
}

// Conversion builds the Marlin layer on the target device, never on meta (AutoGPTQ #551: created under
// torch.device("meta"), its bias.copy_() did nothing): every buffer is real, the bias is the source's.
TEST(MetaMaterialization, MarlinConversionBuildsOnTheTargetDevice) {
  const auto source = quantized_layer(true);
  const auto marlin = marlin::to_marlin(*source, c10::kCPU, "layer");
  for (const auto& [name, slot] : marlin->tensors()) {
    EXPECT_FALSE(slot->value.is_meta()) << name;
    EXPECT_NE(slot->value.data_ptr(), nullptr) << name;
  }
  EXPECT_TRUE(marlin->tensor("bias").equal(source->tensor("bias")));
  EXPECT_TRUE(marlin->dequantize().equal(source->dequantize()));
}

// A source still on meta cannot be converted: the error says to load it first.
TEST(MetaMaterialization, MarlinConversionRefusesAMetaSource) {
  EXPECT_THROW(marlin::to_marlin(*quantized_layer(true, c10::Device(c10::kMeta)), c10::kCPU, "layer"), ConfigError);
}

// On CUDA: every buffer on the GPU, and B, s, perm equal the CPU conversion's.
TEST(GpuMetaMaterialization, MarlinConversionOnCuda) {
  QH_REQUIRE_CUDA();
  const auto source = quantized_layer(true);
  const auto cpu = marlin::to_marlin(*source, c10::kCPU, "layer");
  const auto gpu = marlin::to_marlin(*source, c10::Device(c10::kCUDA, 0), "layer");
  for (const auto& [name, slot] : gpu->tensors()) {
    EXPECT_TRUE(slot->value.is_cuda()) << name;
    EXPECT_TRUE(slot->value.cpu().equal(cpu->tensor(name))) << name;
  }
}

}  // namespace
}  // namespace qh
