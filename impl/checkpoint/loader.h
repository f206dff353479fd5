// The model loader: build the module tree on `meta` (no memory), decide per module whether it is quantized,
// skipped or plain, swap quantized Linears for QuantLinear (still on meta), then give every parameter and buffer
// real storage on the target device straight from the checkpoint, and check that nothing was left on meta.
//
// The failures it pins (FORMATS.md 3.3, section 4): a bias in the checkpoint that the quantized layer has no slot
// for, or a slot the checkpoint cannot fill, is reported by name instead of being dropped or left random; a
// tensor that stays on meta is an error, never a silent no-op copy; tied output heads are handled explicitly
// under both `tie_word_embeddings` and StripedHyena's `tie_embeddings`; custom modules the quantizer cannot handle
// must be skipped by rule, and the error says which module and which rule would do it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "impl/checkpoint/quantization.h"
#include "impl/checkpoint/skip_rules.h"
#include "impl/model/architectures.h"

namespace qh::checkpoint {

enum class ModuleAction { Quantized, Skipped, Tied, Plain };
const char* to_string(ModuleAction action);

struct ModuleDecision {
  std::string module;  // qualified name
  std::string kind;
  ModuleAction action = ModuleAction::Plain;
  std::string reason;
};

// Decides every module that holds a floating tensor of rank >= 2, reading no tensor data. With `layout` (a
// quantized checkpoint): a module matched by `skip` (by its name, or all its matrices by theirs) -> Skipped; one
// holding a tied tensor -> Tied (full precision: quantizing one side would break the tie); the output head ->
// Plain unless config.lm_head; Linear -> Quantized, or Skipped by a dynamic "-:" rule; Embedding, RMSNorm -> Plain. Any other kind cannot be
// quantized: ConfigError naming the module, its kind and tensors and the skip keys that would keep it.
// Without `layout` every module is Plain.
std::vector<ModuleDecision> plan_modules(const model::Model& model, const std::optional<QuantizedLayout>& layout,
                                         const SkipRules& skip);

// Replaces every Quantized module (a Linear) by a QuantLinear with the same bias presence, on the device and dtype
// of the Linear's weight (meta before loading).
void apply_plan(model::Model& model, const std::vector<ModuleDecision>& plan, const QuantizedLayout& layout);

struct LoadOptions {
  c10::Device device = c10::kCPU;
  std::vector<std::string> skip_modules;  // added to the checkpoint's own (modules_to_not_convert, dynamic "-:")
  bool strict = true;  // false: unexpected checkpoint tensors are reported but not an error (accelerate's default)
};

struct LoadReport {
  std::string directory;
  std::string quantization_source;  // which file held the quantization config ("" for a plain checkpoint)
  std::optional<QuantizedLayout> layout;
  std::vector<ModuleDecision> modules;
  std::vector<std::string> unexpected;  // only when !strict
  std::vector<std::string> notes;       // e.g. a tied alias present in the file and ignored
  std::uint64_t bytes_copied = 0;       // bytes copied into new storage (views of the mapping cost none)
  std::uint64_t bytes_viewed = 0;
};

struct LoadedModel {
  model::Model model;
  LoadReport report;
};

// Loads DIR/config.json, the quantization config (quantize_config.json, quant_config.json or config.json's
// quantization_config, when any) and DIR/model.safetensors onto options.device. Floating tensors of plain
// modules take the model dtype (float32 for the architecture's keep_float32 tensors); QuantLinear scales and
// biases keep their stored dtype (never re-rounded); integer buffers must be int32. On the CPU a tensor whose
// dtype already matches is a view of the file's mapping, so the weights are never held twice.
// Errors list every missing, unexpected and mis-shaped tensor by name (FormatError / ShapeError).
LoadedModel load_checkpoint(const std::string& directory, const LoadOptions& options);

// Every parameter and buffer is on `device` with real storage (no meta, no null data); throws ConfigError naming
// the first tensor that is not.
void check_materialized(const model::Model& model, c10::Device device);

}  // namespace qh::checkpoint
