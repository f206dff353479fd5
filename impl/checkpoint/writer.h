// Writes a model as a checkpoint directory that transformers / GPTQModel / AutoGPTQ can load: model.safetensors
// (every parameter and buffer, each tied tensor once under its source's name: safetensors refuses shared
// tensors), config.json (the model config, with `quantization_config` when quantized) and quantize_config.json in
// GPTQModel's layout. Each file is written atomically (temporary file + rename).
#pragma once

#include <map>
#include <string>

#include "impl/format/quantize_config.h"
#include "impl/model/architectures.h"

namespace qh::checkpoint {

// `quantization` is null for a plain model. Every QuantLinear must use the zero-point convention of
// quantization->checkpoint_format (ConfigError naming the layer otherwise); the safetensors metadata records the
// format ("format": "pt", as torch's save_file writes) and the writer (`metadata` adds to it).
void save_checkpoint(const model::Model& model, const std::string& directory,
                     const format::QuantizeConfig* quantization, const std::map<std::string, std::string>& metadata = {});

}  // namespace qh::checkpoint
