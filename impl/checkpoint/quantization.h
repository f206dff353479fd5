// A checkpoint's quantization, as the loader needs it: the config (impl/format/quantize_config), the zero-point
// convention its qzeros use, and the skip keys it carries. The v1/v2 convention comes from checkpoint_format; when
// the config does not state it, the stored zero points decide where they can (symmetric layers), because loading
// v2 words as v1 or the reverse shifts every weight by one scale step: the models that emit only "!!!!".
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "impl/format/quantize_config.h"
#include "impl/quant_linear/packing.h"

namespace qh::checkpoint {

// How the quantized layers of a checkpoint are stored.
struct QuantizedLayout {
  format::QuantizeConfig config;  // bits, group_size, sym, desc_act, lm_head, dynamic overrides
  quant_linear::ZeroFormat zero_format = quant_linear::ZeroFormat::V1;
  bool zero_format_stated = true;  // false: checkpoint_format was missing and gptq (v1) was assumed
  bool marlin = false;             // checkpoint_format marlin: layers hold B, s (and perm), not qweight/qzeros

  // The spec of module `module` (K = in_features, N = out_features) with GPTQModel's dynamic overrides applied;
  // nullopt when a dynamic "-:" rule leaves the module unquantized.
  std::optional<quant_linear::QuantSpec> spec_for(const std::string& module, std::int64_t in_features,
                                                  std::int64_t out_features) const;
};

// The layout of `config`.
QuantizedLayout layout_from(const format::QuantizeConfig& config);

struct CheckpointQuantization {
  QuantizedLayout layout;
  std::vector<std::string> skip_modules;  // modules_to_not_convert
  std::string source;
};

// The quantization of checkpoint `directory`, or nullopt when it has none (no quantize_config.json, no
// quant_config.json, no quantization_config in config.json): a plain model.
std::optional<CheckpointQuantization> find_quantization(const std::string& directory);

// Compares what a layer's stored zero points say (all symmetric fields at 2^(b-1) - 1 -> v1, 2^(b-1) -> v2) with
// the layout. A stated format that the words contradict is a FormatError naming the tensor and both readings; an
// unstated one is settled by the words (returned so the caller can convert), nullopt when they cannot tell.
std::optional<quant_linear::ZeroFormat> check_zero_format(const at::Tensor& qzeros, const quant_linear::QuantSpec& spec,
                                                          const QuantizedLayout& layout, const std::string& layer,
                                                          const std::string& file);

// The spec a layer's stored buffers are read with: `spec` with its zero-point convention settled by
// check_zero_format (an unstated format taken from the words, said in `notes`), once validate_packed has accepted
// the buffers under it. Throws as those two do. The loader, verify and convert all read layers through this.
quant_linear::QuantSpec checked_spec(const quant_linear::PackedWeights& packed, quant_linear::QuantSpec spec,
                                     const QuantizedLayout& layout, const std::string& layer, const std::string& file,
                                     std::vector<std::string>* notes = nullptr);

}  // namespace qh::checkpoint
