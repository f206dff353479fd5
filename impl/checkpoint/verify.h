// `qharness verify`'s checks on any GPTQ checkpoint directory (one produced by AutoGPTQ, GPTQModel, transformers or
// us), reading tensors only through the validated safetensors reader and never needing the model's code: the
// quantization config (validated, the two copies agreeing), every quantized layer's buffers against the config
// (shapes, dtypes, the bits the shapes imply, g_idx, finite positive scales), the stored zero points against
// checkpoint_format (the v1/v2 mix-up), and biases (present where the base model has one and equal to it, or at
// least consistent across layers of the same name).
#pragma once

#include <string>
#include <vector>

namespace qh::checkpoint {

struct Finding {
  std::string layer;  // qualified module name, or "" for the checkpoint as a whole
  std::string check;  // config, tensors, zero_format, scales, bias
  std::string message;
};

struct VerifyReport {
  std::vector<std::string> layers;  // quantized layers found (prefixes of *.qweight)
  std::vector<Finding> findings;
  std::vector<std::string> notes;  // facts that are not defects (e.g. v2 words under an unstated format)
};

// `base_dir` ("" for none): the unquantized model's directory (its *.safetensors), to check biases against.
VerifyReport verify_checkpoint(const std::string& dir, const std::string& base_dir = "");

}  // namespace qh::checkpoint
