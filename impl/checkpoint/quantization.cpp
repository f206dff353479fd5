#include "impl/checkpoint/quantization.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "impl/core/errors.h"

namespace qh::checkpoint {

namespace {

bool config_json_has_quantization(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  // Malformed JSON is not judged here: read_quantize_config reports it with the file's name.
  const auto doc = nlohmann::json::parse(text.str(), nullptr, false);
  return !doc.is_discarded() && doc.is_object() && doc.contains("quantization_config");
}

}  // namespace

std::optional<quant_linear::QuantSpec> QuantizedLayout::spec_for(const std::string& module, std::int64_t in_features,
                                                                 std::int64_t out_features) const {
  const auto settings = config.settings_for(module);
  if (!settings) return std::nullopt;
  return quant_linear::QuantSpec{in_features,    out_features,  settings->bits, settings->group_size,
                                 settings->sym, settings->desc_act, zero_format};
}

QuantizedLayout layout_from(const format::QuantizeConfig& config) {
  QuantizedLayout layout;
  layout.config = config;
  switch (config.checkpoint_format) {
    case format::CheckpointFormat::Gptq: layout.zero_format = quant_linear::ZeroFormat::V1; break;
    case format::CheckpointFormat::GptqV2: layout.zero_format = quant_linear::ZeroFormat::V2; break;
    case format::CheckpointFormat::Marlin: layout.marlin = true; break;
  }
  layout.zero_format_stated = config.checkpoint_format_stated;
  return layout;
}

std::optional<CheckpointQuantization> find_quantization(const std::string& directory) {
  namespace fs = std::filesystem;
  const bool any = fs::exists(directory + "/quantize_config.json") || fs::exists(directory + "/quant_config.json") ||
                   config_json_has_quantization(directory + "/config.json");
  if (!any) return std::nullopt;
  const format::QuantizeConfig config = format::read_quantize_config(directory);
  return CheckpointQuantization{layout_from(config), config.modules_to_not_convert, config.source};
}

std::optional<quant_linear::ZeroFormat> check_zero_format(const at::Tensor& qzeros, const quant_linear::QuantSpec& spec,
                                                          const QuantizedLayout& layout, const std::string& layer,
                                                          const std::string& file) {
  using quant_linear::ZeroFormat;
  const auto words_say = spec.sym ? quant_linear::zero_format_from_qzeros(qzeros, spec) : std::nullopt;
  if (!words_say) return std::nullopt;
  if (layout.zero_format_stated && *words_say != layout.zero_format) {
    const int mid = 1 << (spec.bits - 1);
    const int stored = *words_say == ZeroFormat::V1 ? mid - 1 : mid;
    throw FormatError(
        FormatError::Code::Other, Where{.file = file, .tensor = layer + ".qzeros"},
        "stored symmetric zero points must match checkpoint_format (a mismatch shifts every weight by one scale step)",
        std::string("checkpoint_format ") + quant_linear::checkpoint_format_name(layout.zero_format) + ": stored " +
            std::to_string(layout.zero_format == ZeroFormat::V1 ? mid - 1 : mid),
        "every field stores " + std::to_string(stored) + ", the " +
            quant_linear::checkpoint_format_name(*words_say) + " symmetric zero");
  }
  return words_say;
}

quant_linear::QuantSpec checked_spec(const quant_linear::PackedWeights& packed, quant_linear::QuantSpec spec,
                                     const QuantizedLayout& layout, const std::string& layer, const std::string& file,
                                     std::vector<std::string>* notes) {
  if (const auto words = check_zero_format(packed.qzeros, spec, layout, layer, file);
      words && *words != spec.zero_format) {
    if (notes != nullptr) {
      notes->push_back(layer + ": checkpoint_format unstated; the stored zero points are " +
                       quant_linear::checkpoint_format_name(*words));
    }
    spec.zero_format = *words;
  }
  quant_linear::validate_packed(packed, spec, layer, file);
  return spec;
}

}  // namespace qh::checkpoint
