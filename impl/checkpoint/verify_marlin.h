// `qharness verify`'s checks on one layer of a checkpoint_format "marlin" checkpoint (docs/marlin.md): B, s, perm
// against the config and the layer's K and N, the zero padding, the scales. Internal to verify.cpp, which owns the
// tensor index, the bias checks and the report.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "impl/checkpoint/quantization.h"
#include "impl/checkpoint/verify.h"
#include "impl/format/safetensors.h"

namespace qh::checkpoint {

// Every tensor of a directory's *.safetensors files by name: the file that holds it and its header entry.
using TensorIndex = std::map<std::string, std::pair<std::shared_ptr<const format::SafetensorsFile>,
                                                    const format::TensorInfo*>>;

// Whether `name` (ending in ".B") is a Marlin layer's B: int32, or with `<prefix>.s` beside it. A float `B` with no
// `s` (a state-space model's parameter) is not.
bool is_marlin_b(const TensorIndex& tensors, const std::string& name);

// The unpadded extents of a Marlin layer where something tells them: the base model's `<layer>.weight` (N, K), else
// `perm` (K,) and `bias` (N,). B and s hold only the padded K' and N'.
struct MarlinExtents {
  std::optional<std::int64_t> k, n;
  std::string k_from, n_from;  // "the base model", "perm's length", "bias's length"
};

// Checks layer `layer` (a prefix of *.B) under `layout` (layout.marlin), appending findings (checks config, tensors,
// scales, perm, padding) that name the layer and say the rule with the numbers. `base` is empty without --base.
// Returns the extents it used, for the caller's bias checks and its note about what could not be checked.
MarlinExtents check_marlin_layer(const std::string& layer, const QuantizedLayout& layout, const TensorIndex& tensors,
                                 const TensorIndex& base, std::vector<Finding>& findings);

}  // namespace qh::checkpoint
