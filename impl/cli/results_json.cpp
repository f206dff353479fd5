#include "impl/cli/results_json.h"

namespace qh::cli {

nlohmann::ordered_json layer_json(const gptq::LayerSummary& s, const char* path) {
  return {{"name", s.name},           {"path", path},
          {"bits", s.bits},           {"group_size", s.group_size},
          {"desc_act", s.desc_act},   {"damp_initial", s.damp_initial},
          {"damp_final", s.damp_final}, {"attempts", s.attempts},
          {"float64_retry", s.float64_retry}, {"dead_columns", s.dead_columns},
          {"calib_tokens", s.calib_tokens}, {"min_pivot", s.min_pivot},
          {"loss", s.loss},           {"seconds", s.seconds}};
}

nlohmann::ordered_json check_json(const std::string& name, const std::string& suite, const std::string& status,
                                  double seconds, const std::string& message, nlohmann::ordered_json details) {
  return {{"name", name},       {"suite", suite},     {"status", status}, {"duration_s", seconds},
          {"message", message}, {"details", std::move(details)}};
}

}  // namespace qh::cli
