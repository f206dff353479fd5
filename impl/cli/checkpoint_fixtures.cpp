#include "impl/cli/checkpoint_fixtures.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "impl/checkpoint/loader.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/checkpoint/verify.h"
#include "impl/cli/results_json.h"
#include "impl/core/atomic_file.h"
#include "impl/model/layers.h"

namespace qh::cli {

namespace {

using nlohmann::ordered_json;

ordered_json check(const std::string& name, bool pass, double seconds, const std::string& message) {
  return check_json("checkpoint/" + name, "qharness.checkpoint", pass ? "pass" : "fail", seconds, message);
}

// Every quantized layer of `loaded` carries the bias of the same layer in `original`, bit for bit.
std::string bias_mismatches(model::Model& loaded, model::Model& original) {
  std::string out;
  for (const auto& [name, m] : model::named_modules(*loaded.root)) {
    if (m->kind() != "QuantLinear") continue;
    const auto* source = model::find_module(*original.root, name);
    const auto mine = m->slot("bias");
    const auto theirs = source == nullptr ? nullptr : source->slot("bias");
    if ((mine == nullptr) != (theirs == nullptr) || (mine && !mine->value.equal(theirs->value))) {
      out += (out.empty() ? "" : ", ") + name;
    }
  }
  return out;
}

}  // namespace

QuantizeOptions write_quantize_inputs(const model::Model& model, const std::string& dir, std::uint64_t seed) {
  std::vector<std::pair<std::string, at::Tensor>> weights, calib;
  for (const auto& t : model::named_tensors(*model.root)) weights.emplace_back(t.name, t.slot->value);
  at::manual_seed(seed);
  for (const auto& [name, m] : model::named_modules(*model.root)) {
    const auto* linear = dynamic_cast<const model::Linear*>(m);
    if (linear == nullptr || name == model.output_head) continue;
    const std::int64_t k = linear->in_features();
    // Correlated channels (x = z A), the structure GPTQ exploits; fp16, as activations come from a model.
    const at::Tensor mix = at::randn({k, k}) / std::sqrt(double(k)) + at::eye(k);
    calib.emplace_back(name + ".inputs", at::randn({4, 64, k}).matmul(mix).to(at::kHalf));
  }
  checkpoint::save_tensors(dir + "/weights.safetensors", weights);
  checkpoint::save_tensors(dir + "/calib.safetensors", calib);
  write_file_atomically(dir + "/config.json", format::model_config_json(model.config));
  QuantizeOptions o;
  o.weights = dir + "/weights.safetensors";
  o.calibration = dir + "/calib.safetensors";
  o.base_config = dir + "/config.json";
  o.out_dir = dir + "/gptq";
  o.config.group_size = 32;
  return o;
}

void run_checkpoint_fixtures(const std::string& out_dir, ordered_json& checks, ordered_json& layers) {
  struct Variant {
    const char* name;
    bool sym;
    format::CheckpointFormat format;
  };
  const Variant variants[] = {{"v1_sym", true, format::CheckpointFormat::Gptq},
                              {"v2_asym", false, format::CheckpointFormat::GptqV2}};
  model::Model original = model::build_model(model::tiny_llama_config(true, true, false), c10::kCPU);
  model::init_random(original, 11);
  for (const Variant& v : variants) {
    const auto start = std::chrono::steady_clock::now();
    const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    const std::string dir = out_dir + "/checkpoint/" + v.name;
    const std::string prefix = std::string(v.name) + "/";
    try {
      std::filesystem::create_directories(dir);
      QuantizeOptions o = write_quantize_inputs(original, dir, 12);
      o.config.sym = v.sym;
      o.config.checkpoint_format = v.format;
      const QuantizeResult q = quantize_checkpoint(o, false);
      for (const auto& s : q.layers) layers.push_back(layer_json(s, "checkpoint"));
      checks.push_back(check(prefix + "quantize", true, elapsed(),
                             std::to_string(q.layers.size()) + " layers quantized, " + std::to_string(q.kept.size()) +
                                 " kept in full precision -> " + o.out_dir));
      const checkpoint::VerifyReport report = checkpoint::verify_checkpoint(o.out_dir);
      std::string findings;
      for (const auto& f : report.findings) findings += (findings.empty() ? "" : "; ") + f.layer + ": " + f.message;
      checks.push_back(check(prefix + "verify", findings.empty(), elapsed(),
                             findings.empty() ? std::to_string(report.layers.size()) + " layers, no finding" : findings));
      auto loaded = checkpoint::load_checkpoint(o.out_dir, {});
      checkpoint::check_materialized(loaded.model, c10::kCPU);
      const std::string wrong = bias_mismatches(loaded.model, original);
      checks.push_back(check(prefix + "load_keeps_bias", wrong.empty(), elapsed(),
                             wrong.empty() ? "every quantized layer loaded with its original bias, nothing on meta"
                                           : "bias lost or changed: " + wrong));
    } catch (const std::exception& e) {
      checks.push_back(check_json("checkpoint/" + prefix + "error", "qharness.checkpoint", "error", elapsed(),
                                  e.what()));
    }
  }
}

}  // namespace qh::cli
