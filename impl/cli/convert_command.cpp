#include "impl/cli/convert_command.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "impl/checkpoint/quantization.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"
#include "impl/core/progress.h"
#include "impl/core/text_file.h"
#include "impl/marlin/marlin_linear.h"

namespace qh::cli {

int convert_command(const ConvertOptions& o) {
  const std::string path = o.in_dir + "/model.safetensors";
  const auto q = checkpoint::find_quantization(o.in_dir);
  if (!q) {
    throw ConfigError(Where{.file = o.in_dir}, "convert reads a GPTQ checkpoint", "a quantization config",
                      "none (quantize_config.json, quant_config.json, config.json quantization_config)");
  }
  if (q->layout.marlin) {
    throw ConfigError(Where{.file = q->source}, "convert --to marlin reads gptq or gptq_v2", "gptq or gptq_v2",
                      "already marlin");
  }
  const auto file = format::SafetensorsFile::open(path);
  const c10::Device device = o.device == "cuda" ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  auto load = [&](const std::string& name) { return checkpoint::load_tensor(file, name, c10::kCPU); };

  std::vector<std::string> layers;
  for (const auto& info : file->header().tensors) {
    const auto& n = info.name;
    if (n.size() > 8 && n.compare(n.size() - 8, 8, ".qweight") == 0) layers.push_back(n.substr(0, n.size() - 8));
  }
  std::vector<std::pair<std::string, at::Tensor>> out;
  std::set<std::string> consumed;
  Progress progress("convert", layers.size());
  for (const std::string& layer : layers) {
    const at::Tensor qweight = load(layer + ".qweight"), g_idx = load(layer + ".g_idx");
    const auto spec = q->layout.spec_for(layer, g_idx.numel(), qweight.size(-1));
    if (!spec) {
      throw ConfigError(Where{.layer = layer}, "a layer stored quantized must be quantized by the config",
                        "no dynamic \"-:\" rule for it", "a \"-:\" rule matches");
    }
    const quant_linear::PackedWeights packed{qweight, load(layer + ".qzeros"), load(layer + ".scales"), g_idx};
    const quant_linear::QuantSpec s = checkpoint::checked_spec(packed, *spec, q->layout, layer, path);
    const bool bias = file->header().find(layer + ".bias") != nullptr;
    quant_linear::QuantLinear source(s, bias, at::TensorOptions().dtype(packed.scales.scalar_type()));
    source.set_packed(packed);
    if (bias) source.slot("bias")->value = load(layer + ".bias");
    const auto marlin = marlin::to_marlin(source, device, layer);
    for (const auto& [name, slot] : marlin->tensors()) out.emplace_back(layer + "." + name, slot->value.cpu());
    for (const char* part : {".qweight", ".qzeros", ".scales", ".g_idx", ".bias"}) consumed.insert(layer + part);
    progress.step(layer);
  }
  progress.finish();
  for (const auto& info : file->header().tensors) {
    if (!consumed.count(info.name)) out.emplace_back(info.name, load(info.name));
  }
  format::QuantizeConfig config = q->layout.config;
  config.checkpoint_format = format::CheckpointFormat::Marlin;
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) throw IoError(Where{.file = o.out_dir}, "cannot create the output directory", "a writable path", ec.message());
  checkpoint::save_tensors(o.out_dir + "/model.safetensors", out, {{"format", "pt"}, {"checkpoint_format", "marlin"}});
  format::write_quantize_config(o.out_dir, config);
  const std::string base_path = o.in_dir + "/config.json";
  const std::string base = std::filesystem::exists(base_path) ? read_text_file(base_path, "config.json") : "{}";
  write_file_atomically(o.out_dir + "/config.json", format::config_json_with_quantization(base, config, base_path));
  std::printf("qharness convert: %zu layers -> marlin (%s) -> %s\n", layers.size(), o.device.c_str(),
              o.out_dir.c_str());
  return 0;
}

}  // namespace qh::cli
