// JSON records shared by the commands that write results.json (docs/results.md): checks and GPTQ layer summaries.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "impl/gptq/config.h"

namespace qh::cli {

nlohmann::ordered_json layer_json(const gptq::LayerSummary& s, const char* path);

nlohmann::ordered_json check_json(const std::string& name, const std::string& suite, const std::string& status,
                                  double seconds, const std::string& message,
                                  nlohmann::ordered_json details = nlohmann::ordered_json::object());

}  // namespace qh::cli
