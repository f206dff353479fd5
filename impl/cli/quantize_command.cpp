#include "impl/cli/quantize_command.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "impl/checkpoint/quantization.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/checkpoint/skip_rules.h"
#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"
#include "impl/core/progress.h"
#include "impl/core/text_file.h"
#include "impl/gptq/hessian.h"
#include "impl/quant_linear/from_gptq.h"

namespace qh::cli {

namespace {

struct Job {
  std::string layer;
  const format::TensorInfo* weight;
  const format::TensorInfo* bias;         // nullptr when the layer has none
  const format::TensorInfo* calibration;  // <layer>.hessian or <layer>.inputs
  bool hessian;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

gptq::GptqConfig gptq_config_of(const QuantizeOptions& o) {
  gptq::GptqConfig c;
  c.bits = o.config.bits;
  c.group_size = o.config.group_size;
  c.sym = o.config.sym;
  c.desc_act = o.config.desc_act;
  c.static_groups = o.config.static_groups;
  c.float64 = o.float64;
  c.damping.percdamp = o.config.damp_percent;
  c.damping.increment = o.config.damp_auto_increment;
  return c;
}

// Layers to quantize: every 2-D floating <layer>.weight with calibration data and no skip key.
std::vector<Job> plan_jobs(const format::SafetensorsFile& weights, const format::SafetensorsFile& calib,
                           const checkpoint::SkipRules& skip, std::vector<std::string>& kept) {
  std::vector<Job> jobs;
  for (const format::TensorInfo& t : weights.header().tensors) {
    if (!ends_with(t.name, ".weight") || t.shape.size() != 2) continue;
    const std::string layer = t.name.substr(0, t.name.size() - 7);
    const auto* hessian = calib.header().find(layer + ".hessian");
    const auto* inputs = calib.header().find(layer + ".inputs");
    if (skip.match(layer) || (hessian == nullptr && inputs == nullptr)) {
      kept.push_back(layer);
      continue;
    }
    jobs.push_back({layer, &t, weights.header().find(layer + ".bias"), hessian ? hessian : inputs, hessian != nullptr});
  }
  return jobs;
}

}  // namespace

QuantizeResult quantize_checkpoint(const QuantizeOptions& o, bool show_progress) {
  const format::CheckpointFormat fmt = o.config.checkpoint_format;
  if (fmt == format::CheckpointFormat::Marlin) {
    throw ConfigError(Where{}, "quantize writes GPTQ checkpoints; convert to Marlin afterwards", "gptq or gptq_v2",
                      "marlin");
  }
  format::validate_quantize_config(o.config, "command line");
  const c10::Device device = o.device == "cuda" ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  // Every input is read before any GPTQ runs or any file is written: a bad base config must not leave a
  // model.safetensors behind.
  const std::string base = o.base_config.empty() ? "{}" : read_text_file(o.base_config, "the base config");
  const auto weights = format::SafetensorsFile::open(o.weights);
  const auto calib = format::SafetensorsFile::open(o.calibration);
  checkpoint::SkipRules skip(o.skip);
  QuantizeResult result;
  const std::vector<Job> jobs = plan_jobs(*weights, *calib, skip, result.kept);
  if (jobs.empty()) {
    throw ConfigError(Where{.file = o.calibration}, "at least one layer needs calibration data",
                      "'<layer>.hessian' or '<layer>.inputs' for a '<layer>.weight' of " + o.weights,
                      "no matching tensor");
  }
  const auto zero_format =
      fmt == format::CheckpointFormat::GptqV2 ? quant_linear::ZeroFormat::V2 : quant_linear::ZeroFormat::V1;
  const gptq::GptqConfig gc = gptq_config_of(o);

  std::vector<std::pair<std::string, at::Tensor>> out;
  {
    Progress progress("quantize", jobs.size(), show_progress ? Progress::Style::Auto : Progress::Style::Silent);
    for (const Job& job : jobs) {
      const at::Tensor w = checkpoint::load_tensor(weights, *job.weight, c10::kCPU);
      if (!at::isFloatingType(w.scalar_type())) {
        throw ConfigError(Where{.file = o.weights, .tensor = job.weight->name}, "a Linear weight is floating point",
                          "F16, BF16 or F32", c10::toString(w.scalar_type()));
      }
      const at::Tensor data = checkpoint::load_tensor(calib, *job.calibration, c10::kCPU);
      at::Tensor hessian;
      std::int64_t tokens = -1;
      if (job.hessian) {
        hessian = data;
      } else {
        gptq::HessianAccumulator acc(w.size(1), job.layer, o.float64 ? at::kDouble : at::kFloat, device);
        acc.add_batch(data);
        hessian = acc.hessian();
        tokens = acc.tokens();
      }
      const at::Tensor bias = job.bias ? checkpoint::load_tensor(weights, *job.bias, c10::kCPU) : at::Tensor();
      const c10::ScalarType dtype = w.scalar_type() == at::kBFloat16 ? at::kBFloat16 : at::kHalf;
      auto q = quant_linear::quantize_linear(w.to(at::kFloat), bias, hessian, gc, zero_format, dtype, job.layer, device,
                                             tokens);
      for (const auto& [name, slot] : q.module->tensors()) out.emplace_back(job.layer + "." + name, slot->value);
      result.layers.push_back(q.summary);
      progress.step(job.layer);
    }
  }
  std::set<std::string> done;
  for (const auto& [name, t] : out) done.insert(name);
  for (const Job& job : jobs) done.insert(job.weight->name);
  for (const format::TensorInfo& t : weights->header().tensors) {
    if (!done.count(t.name)) out.emplace_back(t.name, checkpoint::load_tensor(weights, t, c10::kCPU));
  }

  format::QuantizeConfig config = o.config;
  if (config.quantizer.empty()) config.quantizer = {std::string("qharness:") + QH_VERSION};
  for (const auto& key : o.skip) config.modules_to_not_convert.push_back(key);
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) throw IoError(Where{.file = o.out_dir}, "cannot create the output directory", "a writable path", ec.message());
  checkpoint::save_tensors(o.out_dir + "/model.safetensors", out,
                           {{"format", "pt"}, {"checkpoint_format", format::to_string(fmt)},
                            {"quantizer", config.quantizer.front()}});
  format::write_quantize_config(o.out_dir, config);
  write_file_atomically(o.out_dir + "/config.json",
                        format::config_json_with_quantization(base, config, o.base_config.empty() ? "{}" : o.base_config));

  return result;
}

int quantize_command(const QuantizeOptions& o) {
  const QuantizeResult result = quantize_checkpoint(o);
  std::printf("%-48s %5s %6s %8s %8s %12s %8s\n", "layer", "bits", "group", "damp", "tries", "loss", "seconds");
  for (const auto& s : result.layers) {
    std::printf("%-48s %5d %6d %8.4f %8d %12.4g %8.2f\n", s.name.c_str(), s.bits, s.group_size, s.damp_final,
                s.attempts, s.loss, s.seconds);
  }
  std::printf("qharness quantize: %zu layers quantized (%s), %zu kept in full precision -> %s\n", result.layers.size(),
              format::to_string(o.config.checkpoint_format), result.kept.size(), o.out_dir.c_str());
  return 0;
}

}  // namespace qh::cli
