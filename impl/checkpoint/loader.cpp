#include "impl/checkpoint/loader.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/checkpoint/quantization.h"
#include "impl/core/errors.h"
#include "impl/core/shape_text.h"
#include "impl/marlin/marlin_linear.h"
#include "impl/model/layers.h"
#include "impl/quant_linear/quant_linear.h"

namespace qh::checkpoint {

namespace {

using model::Module;
using model::NamedTensor;

bool is_matrix(const at::Tensor& t) { return t.dim() >= 2 && at::isFloatingType(t.scalar_type()); }

std::string describe(const at::Tensor& t) {
  return shape_text(t.sizes().vec()) + " " + std::string(c10::toString(t.scalar_type()));
}

// The module's floating tensors of rank >= 2, by local name.
std::vector<std::pair<std::string, at::Tensor>> matrices_of(const Module& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, slot] : m.tensors()) {
    if (is_matrix(slot->value)) out.emplace_back(name, slot->value);
  }
  return out;
}

std::optional<std::string> skipped_by(const std::string& module, const Module& m, const SkipRules& skip) {
  if (auto key = skip.match(module)) return key;
  std::optional<std::string> key;
  for (const auto& [name, t] : matrices_of(m)) {
    key = skip.match(model::join_name(module, name));
    if (!key) return std::nullopt;  // one matrix not covered: the module is not skipped as a whole
  }
  return key;
}

bool holds_tie(const model::Model& model, const std::string& module, const Module& m) {
  for (const auto& [name, slot] : m.tensors()) {
    const std::string qualified = model::join_name(module, name);
    for (const auto& [alias, source] : model.ties) {
      if (qualified == alias || qualified == source) return true;
    }
  }
  return false;
}

std::string unquantizable(const std::string& module, const Module& m) {
  std::string tensors, keys;
  for (const auto& [name, t] : matrices_of(m)) {
    tensors += (tensors.empty() ? "" : ", ") + name + " " + describe(t);
    keys += (keys.empty() ? "\"" : ", \"") + name + "\"";
  }
  return "'" + module + "' (" + m.kind() + ") holds " + tensors + "; add \"" + model::split_last(module).second +
         "\" or [" + keys + "\"] to the skip modules (modules_to_not_convert / --skip)";
}

}  // namespace

const char* to_string(ModuleAction action) {
  switch (action) {
    case ModuleAction::Quantized: return "quantized";
    case ModuleAction::Skipped: return "skipped";
    case ModuleAction::Tied: return "tied";
    case ModuleAction::Plain: return "plain";
  }
  return "?";
}

std::vector<ModuleDecision> plan_modules(const model::Model& model, const std::optional<QuantizedLayout>& layout,
                                         const SkipRules& skip) {
  std::vector<ModuleDecision> plan;
  std::vector<std::pair<std::string, std::string>> refused;  // module, why
  for (const auto& [name, m] : model::named_modules(*model.root)) {
    if (matrices_of(*m).empty()) continue;
    ModuleDecision d{name, m->kind(), ModuleAction::Plain, "not quantized (plain checkpoint)"};
    if (layout) {
      if (const auto key = skipped_by(name, *m, skip)) {
        d = {name, m->kind(), ModuleAction::Skipped, "matches skip key \"" + *key + "\""};
      } else if (holds_tie(model, name, *m)) {
        d = {name, m->kind(), ModuleAction::Tied, "tied (" + model.config.tie_key + "): kept in full precision"};
      } else if (name == model.output_head && !layout->config.lm_head) {
        d.reason = "output head, lm_head: false";
      } else if (m->kind() == "Linear") {
        const auto& w = m->tensor("weight");
        d = layout->spec_for(name, w.size(1), w.size(0))
                ? ModuleDecision{name, m->kind(), ModuleAction::Quantized, "Linear"}
                : ModuleDecision{name, m->kind(), ModuleAction::Skipped, "dynamic \"-:\" rule"};
      } else if (m->kind() == "Embedding" || m->kind() == "RMSNorm") {
        d.reason = m->kind() + " (never quantized)";
      } else {
        refused.emplace_back(name, unquantizable(name, *m));
      }
    }
    plan.push_back(std::move(d));
  }
  if (!refused.empty()) {
    std::string all;
    for (const auto& [module, why] : refused) all += (all.empty() ? "" : "; ") + why;
    throw ConfigError(Where{.layer = refused.front().first},
                      "a module that is not a Linear cannot be quantized and must be skipped by rule",
                      "every custom module skipped", all);
  }
  return plan;
}

void apply_plan(model::Model& model, const std::vector<ModuleDecision>& plan, const QuantizedLayout& layout) {
  for (const ModuleDecision& d : plan) {
    if (d.action != ModuleAction::Quantized) continue;
    const auto* linear = dynamic_cast<const model::Linear*>(model::find_module(*model.root, d.module));
    const at::Tensor& w = linear->tensor("weight");
    const auto spec = *layout.spec_for(d.module, linear->in_features(), linear->out_features());
    if (layout.marlin) {
      // The buffers take the padded shapes (MarlinSpec::k_padded / n_padded) that convert --to marlin writes.
      const marlin::MarlinSpec m = marlin::marlin_spec_of(spec);
      m.validate(d.module);
      model::replace_module(*model.root, d.module,
                            std::make_unique<marlin::MarlinLinear>(m, linear->has_bias(), w.options(), d.module));
      continue;
    }
    spec.validate(d.module);
    auto q = std::make_unique<quant_linear::QuantLinear>(spec, linear->has_bias(), w.options());
    model::replace_module(*model.root, d.module, std::move(q));
  }
}

void check_materialized(const model::Model& model, c10::Device device) {
  for (const NamedTensor& t : model::named_tensors(*model.root)) {
    const at::Tensor& v = t.slot->value;
    std::string problem;
    if (!v.defined()) problem = "undefined";
    else if (v.is_meta()) problem = "still on meta";
    else if (v.device() != device) problem = "on " + v.device().str();
    else if (v.numel() > 0 && v.data_ptr() == nullptr) problem = "no storage";
    if (!problem.empty()) {
      throw ConfigError(Where{.tensor = t.name}, "every parameter and buffer is materialized on the target device",
                        device.str() + " with storage", problem);
    }
  }
}

LoadedModel load_checkpoint(const std::string& directory, const LoadOptions& options) {
  namespace fs = std::filesystem;
  const format::ModelConfig config = format::read_model_config(directory + "/config.json");
  LoadedModel out{model::build_model(config, c10::Device(c10::kMeta)), {}};
  LoadReport& report = out.report;
  report.directory = directory;

  SkipRules skip(options.skip_modules);
  if (const auto q = find_quantization(directory)) {
    report.layout = q->layout;
    report.quantization_source = q->source;
    for (const auto& key : q->skip_modules) skip.add(key);
  }
  report.modules = plan_modules(out.model, report.layout, skip);
  if (report.layout) apply_plan(out.model, report.modules, *report.layout);

  const std::string path = directory + "/model.safetensors";
  if (!fs::exists(path)) {
    throw IoError(Where{.file = path}, "a checkpoint directory holds model.safetensors", "the file",
                  "no such file (sharded checkpoints are not supported yet)");
  }
  const auto file = format::SafetensorsFile::open(path);
  const c10::ScalarType model_dtype = model::scalar_type_of(config);
  std::set<std::string> aliases;
  for (const auto& [alias, source] : out.model.ties) aliases.insert(alias);

  std::vector<std::string> missing, mismatched;
  std::set<std::string> used;
  for (const NamedTensor& t : model::named_tensors(*out.model.root)) {
    if (aliases.count(t.name)) continue;  // filled through the tie's source
    const format::TensorInfo* info = file->header().find(t.name);
    if (info == nullptr) {
      missing.push_back(t.name);
      continue;
    }
    used.insert(t.name);
    const at::Tensor& templ = t.slot->value;
    const at::Tensor stored = load_tensor(file, *info, c10::kCPU);
    if (stored.sizes() != templ.sizes()) {
      mismatched.push_back(t.name + ": expected " + shape_text(templ.sizes().vec()) + ", found " +
                           shape_text(stored.sizes().vec()));
      continue;
    }
    c10::ScalarType dtype = templ.scalar_type();
    const bool quant_buffer = t.owner->kind() == "QuantLinear" || t.owner->kind() == "MarlinLinear";
    if (!at::isFloatingType(dtype)) {
      if (stored.scalar_type() != dtype) {
        mismatched.push_back(t.name + ": expected dtype " + std::string(c10::toString(dtype)) + ", found " +
                             c10::toString(stored.scalar_type()));
        continue;
      }
    } else if (!at::isFloatingType(stored.scalar_type())) {
      mismatched.push_back(t.name + ": expected a floating dtype, found " + c10::toString(stored.scalar_type()));
      continue;
    } else if (quant_buffer) {
      dtype = stored.scalar_type();  // scales and bias keep their stored precision
    } else {
      dtype = out.model.keep_float32.count(t.local) ? at::kFloat : model_dtype;
    }
    if (options.device.is_cpu() && stored.scalar_type() == dtype) {
      t.slot->value = stored;  // a view of the mapping: no second copy of the weights
      report.bytes_viewed += stored.nbytes();
    } else {
      at::Tensor real = at::empty(stored.sizes(), stored.options().dtype(dtype).device(options.device));
      model::copy_into(real, stored, t.name);
      t.slot->value = real;
      report.bytes_copied += real.nbytes();
    }
  }
  std::vector<std::string> unexpected;
  for (const format::TensorInfo& info : file->header().tensors) {
    if (used.count(info.name)) continue;
    if (aliases.count(info.name)) {
      report.notes.push_back("'" + info.name + "' is tied to its source and was not read");
      continue;
    }
    unexpected.push_back(info.name);
  }
  std::sort(unexpected.begin(), unexpected.end());
  auto list = [](const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
  };
  if (!mismatched.empty()) {
    throw ShapeError(Where{.file = path, .tensor = mismatched.front().substr(0, mismatched.front().find(':'))},
                     "checkpoint tensors must have the shapes and dtypes the model config implies",
                     "no mismatch", list(mismatched));
  }
  if (!missing.empty() || (options.strict && !unexpected.empty())) {
    const std::string first = missing.empty() ? unexpected.front() : missing.front();
    std::string found;
    if (!missing.empty()) found += "missing: " + list(missing);
    if (!unexpected.empty()) found += std::string(found.empty() ? "" : "; ") + "unexpected: " + list(unexpected);
    throw FormatError(FormatError::Code::MissingTensor, Where{.file = path, .tensor = first},
                      "the checkpoint's tensors must match the modules its configs describe (a bias the layer "
                      "lacks, or a layer the config says is quantized)",
                      "every model tensor present and no other", found);
  }
  report.unexpected = unexpected;

  for (const auto& [name, m] : model::named_modules(*out.model.root)) {
    auto* q = dynamic_cast<quant_linear::QuantLinear*>(model::find_module(*out.model.root, name));
    if (q == nullptr) continue;
    const auto spec = checked_spec(q->packed(), q->spec(), *report.layout, name, path, &report.notes);
    q->reinterpret_zero_format(spec.zero_format);
  }
  check_materialized(out.model, options.device);
  return out;
}

}  // namespace qh::checkpoint
