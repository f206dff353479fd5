#include "perf/bench_context.h"

#include "perf/policy.h"

namespace qh::perf {

namespace {

ContextHooks& hooks() {
  static ContextHooks h;
  return h;
}

}  // namespace

bool set_context_hooks(ContextHooks h) {
  hooks() = h;
  return true;
}

const ContextHooks& context_hooks() { return hooks(); }

Policy& default_policy() {
  static Policy p;
  return p;
}

nlohmann::ordered_json with_qharness_context(nlohmann::ordered_json doc, nlohmann::ordered_json qh,
                                             const nlohmann::ordered_json& samples) {
  using nlohmann::ordered_json;
  ordered_json by_name = ordered_json::object(), flagged = ordered_json::array();
  for (auto& b : doc["benchmarks"]) {
    if (b.contains("sample_id")) {
      const auto id = std::size_t(b["sample_id"].get<double>());
      if (samples.is_array() && id < samples.size()) by_name[b["name"].get<std::string>()] = samples[id];
      b.erase("sample_id");
    }
    if (b.value("measurement_error", 0.0) != 0.0) flagged.push_back(b["name"]);
  }
  qh["samples"] = by_name;
  qh["measurement_errors"] = flagged;
  doc["context"]["qharness"] = qh;
  return doc;
}

}  // namespace qh::perf
