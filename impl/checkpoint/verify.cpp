#include "impl/checkpoint/verify.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <regex>

#include "impl/checkpoint/quantization.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/checkpoint/verify_marlin.h"
#include "impl/core/errors.h"

namespace qh::checkpoint {

namespace {

using FileRef = std::shared_ptr<const format::SafetensorsFile>;

bool ends_with(const std::string& name, const std::string& suffix) {
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Every tensor of the directory's *.safetensors files by name (sharded checkpoints included).
TensorIndex tensors_of(const std::string& dir, std::vector<Finding>& findings) {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".safetensors") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  TensorIndex out;
  for (const auto& path : paths) {
    try {
      const FileRef file = format::SafetensorsFile::open(path);
      for (const auto& info : file->header().tensors) out[info.name] = {file, &info};
    } catch (const Error& e) {
      findings.push_back({"", "tensors", e.what()});
    }
  }
  if (paths.empty()) findings.push_back({"", "tensors", "no *.safetensors file in " + dir});
  return out;
}

// "model.layers.12.self_attn.q_proj" -> "model.layers.*.self_attn.q_proj": layers that should look alike.
std::string shape_class(const std::string& layer) {
  static const std::regex number(R"((^|\.)\d+(\.|$))");
  return std::regex_replace(layer, number, "$1*$2");
}

class Verifier {
 public:
  Verifier(const std::string& dir, const std::string& base_dir) : dir_(dir) {
    tensors_ = tensors_of(dir, report_.findings);
    if (!base_dir.empty()) base_ = tensors_of(base_dir, report_.findings);
  }

  VerifyReport run() {
    std::optional<CheckpointQuantization> q;
    try {
      q = find_quantization(dir_);
      if (!q) report_.findings.push_back({"", "config", "no quantization config (quantize_config.json, "
                                                        "quant_config.json or config.json quantization_config)"});
    } catch (const Error& e) {
      report_.findings.push_back({"", "config", e.what()});
    }
    if (q && q->layout.marlin) {
      run_marlin(q->layout);
    } else {
      for (const auto& [name, entry] : tensors_) {
        if (ends_with(name, ".qweight")) report_.layers.push_back(name.substr(0, name.size() - 8));
      }
      if (report_.layers.empty()) report_.findings.push_back({"", "tensors", "no quantized layer (*.qweight)"});
      if (q) {
        for (const auto& layer : report_.layers) check_layer(layer, q->layout);
      }
    }
    check_bias_consistency();
    return report_;
  }

 private:
  at::Tensor load(const std::string& name) const {
    const auto& [file, info] = tensors_.at(name);
    return load_tensor(file, *info, c10::kCPU);
  }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  void find(const std::string& layer, const char* check, const std::string& message) {
    report_.findings.push_back({layer, check, message});
  }

  // checkpoint_format marlin: layers are the prefixes of *.B (docs/marlin.md); a GPTQ layer left in is a finding.
  void run_marlin(const QuantizedLayout& layout) {
    for (const auto& [name, entry] : tensors_) {
      if (ends_with(name, ".B") && is_marlin_b(tensors_, name)) {
        report_.layers.push_back(name.substr(0, name.size() - 2));
      }
      if (ends_with(name, ".qweight")) {
        find(name.substr(0, name.size() - 8), "tensors", "a GPTQ qweight in a checkpoint_format marlin checkpoint");
      }
    }
    if (report_.layers.empty()) {
      return find("", "tensors", "no quantized layer (*.B) in a checkpoint_format marlin checkpoint");
    }
    std::size_t unknown_k = 0, unknown_n = 0;
    for (const auto& layer : report_.layers) {
      const MarlinExtents e = check_marlin_layer(layer, layout, tensors_, base_, report_.findings);
      unknown_k += !e.k, unknown_n += !e.n;
      check_bias_against_base(layer, e.n);
    }
    if (unknown_k + unknown_n > 0) report_.notes.push_back(unknown_extents_note(unknown_k, unknown_n));
  }

  // Says for how many Marlin layers the unpadded K or N was unknown (no base; no perm, no bias).
  std::string unknown_extents_note(std::size_t unknown_k, std::size_t unknown_n) const {
    const std::string of = " of " + std::to_string(report_.layers.size());
    std::string unknown;
    if (unknown_k > 0) unknown = "K is unknown for " + std::to_string(unknown_k) + of + " layers";
    if (unknown_n > 0) unknown += (unknown.empty() ? "N is unknown for " : ", N for ") + std::to_string(unknown_n) + of;
    return "Marlin stores only the padded K' and N' (B, s), and perm gives K and the bias N: " + unknown +
           "; their padded rows/columns were not checked (the unpadded K/N need the base model, --base)";
  }

  void check_layer(const std::string& layer, const QuantizedLayout& layout) {
    for (const char* part : {"qzeros", "scales", "g_idx"}) {
      if (!has(layer + "." + part)) return find(layer, "tensors", "missing tensor " + layer + "." + part);
    }
    const at::Tensor qweight = load(layer + ".qweight"), g_idx = load(layer + ".g_idx");
    const std::int64_t k = g_idx.numel(), n = qweight.dim() == 2 ? qweight.size(1) : 0;
    const auto spec = layout.spec_for(layer, k, n);
    if (!spec) return find(layer, "config", "quantized in the file but a dynamic \"-:\" rule leaves it unquantized");
    if (qweight.dim() == 2 && k > 0 && qweight.size(0) * 32 % k == 0 && qweight.size(0) * 32 / k != spec->bits) {
      find(layer, "config", "config says " + std::to_string(spec->bits) + " bits but qweight (" +
                                std::to_string(qweight.size(0)) + " rows for " + std::to_string(k) +
                                " inputs) holds " + std::to_string(qweight.size(0) * 32 / k));
      return;
    }
    const quant_linear::PackedWeights p{qweight, load(layer + ".qzeros"), load(layer + ".scales"), g_idx};
    try {
      checked_spec(p, *spec, layout, layer, tensors_.at(layer + ".qweight").first->path(), &report_.notes);
    } catch (const Error& e) {
      return find(layer, "tensors", e.what());
    }
    const at::Tensor scales = p.scales.to(at::kFloat);
    if (const auto bad = (scales <= 0).sum().item<std::int64_t>(); bad > 0) {
      // GPTQ's grid always has scale = (xmax - xmin) / maxq > 0 (FORMATS.md 2.3): zero or negative means damage.
      find(layer, "scales", std::to_string(bad) + " scales are zero or negative");
    }
    if (has(layer + ".weight")) find(layer, "tensors", "both a full-precision weight and qweight are stored");
    check_bias_against_base(layer, n);
  }

  // `n`: the layer's outputs, where known (a Marlin layer without a base may not tell).
  void check_bias_against_base(const std::string& layer, std::optional<std::int64_t> n) {
    const std::string name = layer + ".bias";
    if (has(name) && n && load(name).numel() != *n) {
      find(layer, "bias", "bias has " + std::to_string(load(name).numel()) + " entries for " + std::to_string(*n) +
                              " outputs");
      return;
    }
    if (base_.empty()) return;
    const auto in_base = base_.find(name);
    if (in_base == base_.end()) {
      if (has(name) && load(name).count_nonzero().item<std::int64_t>() > 0) {
        find(layer, "bias", "a nonzero bias the base model does not have (randomly initialized? optimum #1827)");
      }
      return;
    }
    if (!has(name)) return find(layer, "bias", "the base model has a bias that the checkpoint dropped");
    const at::Tensor base_bias = load_tensor(in_base->second.first, *in_base->second.second, c10::kCPU);
    const at::Tensor mine = load(name);
    // Quantization never touches the bias; only the cast to the checkpoint's dtype may round it.
    if (!mine.to(at::kFloat).equal(base_bias.to(mine.scalar_type()).to(at::kFloat))) {
      find(layer, "bias", "the bias differs from the base model's");
    }
  }

  // Layers of one name across blocks either all have a bias or none has (a dropped bias shows as the odd one out).
  void check_bias_consistency() {
    std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>> classes;
    for (const auto& layer : report_.layers) {
      auto& [with, without] = classes[shape_class(layer)];
      (has(layer + ".bias") ? with : without).push_back(layer);
    }
    for (const auto& [cls, groups] : classes) {
      const auto& [with, without] = groups;
      if (with.empty() || without.empty()) continue;
      const auto& odd = with.size() < without.size() ? with : without;
      for (const auto& layer : odd) {
        find(layer, "bias", std::string(with.size() < without.size() ? "has" : "lacks") + " a bias unlike " +
                                std::to_string(std::max(with.size(), without.size())) + " other " + cls + " layers");
      }
    }
  }

  std::string dir_;
  TensorIndex tensors_, base_;
  VerifyReport report_;
};

}  // namespace

VerifyReport verify_checkpoint(const std::string& dir, const std::string& base_dir) {
  if (!std::filesystem::is_directory(dir)) {
    throw IoError(Where{.file = dir}, "verify takes a checkpoint directory", "a directory", "not a directory");
  }
  return Verifier(dir, base_dir).run();
}

}  // namespace qh::checkpoint
