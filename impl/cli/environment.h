// The `tool` and `environment` blocks of results.json (schema: docs/results.md).
#pragma once

#include <nlohmann/json.hpp>

namespace qh::cli {

nlohmann::ordered_json tool_block();         // {name, version, commit}
nlohmann::ordered_json environment_block();  // {host, cpu, gpus, cuda, torch, compiler}
bool gpu_present();                          // built with CUDA and a usable device found

}  // namespace qh::cli
