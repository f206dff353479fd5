// `qharness verify`'s checks on any GPTQ checkpoint directory (one produced by AutoGPTQ, GPTQModel, transformers or
// us), reading tensors only through the validated safetensors reader and never needing the model's code: the
// quantization config (validated, the two copies agreeing), every quantized layer's buffers against the config
// (shapes, dtypes, the bits the shapes imply, g_idx, finite positive scales), the stored zero points against
// checkpoint_format (the v1/v2 mix-up), and biases (present where the base model has one and equal to it, or at
// least consistent across layers of the same name).
// A checkpoint_format "marlin" checkpoint (qharness convert --to marlin, docs/marlin.md) is checked as Marlin:
// layers are the prefixes of *.B; B (K'/16, 2N') int32 and s (groups, N') fp16/bf16 against the config and the
// layer's K and N (from the base model's weight, else perm and bias), finite positive scales, perm present exactly
// with desc_act and a permutation of 0..K-1, padded rows/columns of B at code 8 and padded scale columns at 0, and
// the same bias checks (verify_marlin.h).
#pragma once

#include <string>
#include <vector>

namespace qh::checkpoint {

struct Finding {
  std::string layer;  // qualified module name, or "" for the checkpoint as a whole
  std::string check;  // config, tensors, zero_format, scales, bias; for Marlin also perm, padding
  std::string message;
};

struct VerifyReport {
  std::vector<std::string> layers;  // quantized layers found (prefixes of *.qweight; of *.B for marlin)
  std::vector<Finding> findings;
  std::vector<std::string> notes;  // facts that are not defects (e.g. v2 words under an unstated format)
};

// `base_dir` ("" for none): the unquantized model's directory (its *.safetensors), to check biases against (and, for
// Marlin, to take each layer's unpadded K and N from).
VerifyReport verify_checkpoint(const std::string& dir, const std::string& base_dir = "");

}  // namespace qh::checkpoint
