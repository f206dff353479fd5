// `qharness convert --to marlin IN OUT`: a GPTQ checkpoint directory -> a Marlin one, tensor by tensor (no model
// code needed): every 4-bit symmetric layer's qweight/qzeros/scales/g_idx become B, s (and perm for act-order, a
// tensor AutoGPTQ's format lacks; docs/marlin.md) with its bias kept; every other tensor is copied; the configs get
// checkpoint_format "marlin". Layers Marlin cannot hold are refused by name with the rule.
#pragma once

#include <string>

namespace qh::cli {

struct ConvertOptions {
  std::string in_dir;
  std::string out_dir;
  std::string device = "cpu";  // where the repack runs: cpu (reference) or cuda (the repack kernel)
};

// Returns 0; throws qh::Error (nothing written) when a layer cannot be converted or the input is bad.
int convert_command(const ConvertOptions& options);

}  // namespace qh::cli
