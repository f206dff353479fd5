#include "impl/checkpoint/writer.h"

#include <filesystem>
#include <set>

#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"
#include "impl/quant_linear/quant_linear.h"

namespace qh::checkpoint {

void save_checkpoint(const model::Model& model, const std::string& directory,
                     const format::QuantizeConfig* quantization, const std::map<std::string, std::string>& metadata) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(directory, ec);
  if (ec) {
    throw IoError(Where{.file = directory}, "cannot create the checkpoint directory", "a writable path", ec.message());
  }
  std::set<std::string> aliases;
  for (const auto& [alias, source] : model.ties) aliases.insert(alias);

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const model::NamedTensor& t : model::named_tensors(*model.root)) {
    if (aliases.count(t.name)) continue;
    if (const auto* q = dynamic_cast<const quant_linear::QuantLinear*>(t.owner); q && t.local == "qzeros") {
      if (quantization != nullptr && quantization->checkpoint_format == format::CheckpointFormat::Marlin) {
        throw ConfigError(Where{.layer = t.module}, "a marlin checkpoint holds MarlinLinear layers",
                          "converted layers (marlin::to_marlin)", "a GPTQ QuantLinear");
      }
      const auto want = quantization == nullptr || quantization->checkpoint_format == format::CheckpointFormat::Gptq
                            ? quant_linear::ZeroFormat::V1
                            : quant_linear::ZeroFormat::V2;
      if (q->spec().zero_format != want) {
        throw ConfigError(Where{.layer = t.module}, "a layer's zero points must use the checkpoint's format",
                          quant_linear::checkpoint_format_name(want),
                          quant_linear::checkpoint_format_name(q->spec().zero_format));
      }
    }
    tensors.emplace_back(t.name, t.slot->value);
  }
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";
  if (quantization != nullptr) meta["checkpoint_format"] = format::to_string(quantization->checkpoint_format);
  save_tensors(directory + "/model.safetensors", tensors, meta);

  const std::string model_json = format::model_config_json(model.config);
  if (quantization != nullptr) {
    format::write_quantize_config(directory, *quantization);
    write_file_atomically(directory + "/config.json",
                          format::config_json_with_quantization(model_json, *quantization, directory + "/config.json"));
  } else {
    write_file_atomically(directory + "/config.json", model_json);
  }
}

}  // namespace qh::checkpoint
