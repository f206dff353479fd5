#include "impl/gptq/config.h"

#include "impl/core/errors.h"

namespace qh::gptq {

void GptqConfig::validate(std::int64_t in_features, const std::string& layer) const {
  const Where where{.layer = layer};
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    throw ConfigError(where, "unsupported bits", "2, 3, 4 or 8", std::to_string(bits));
  }
  if (group_size != -1 && (group_size <= 0 || in_features % group_size != 0)) {
    throw ConfigError(where, "group_size must be -1 (per channel) or divide in_features " + std::to_string(in_features),
                      "-1 or a divisor of " + std::to_string(in_features) + " (e.g. 32, 64, 128)",
                      std::to_string(group_size));
  }
  if (static_groups && group_size == -1) {
    throw ConfigError(where, "static_groups needs groups", "group_size > 0 with static_groups", "group_size -1");
  }
  if (block_size <= 0) throw ConfigError(where, "block_size must be positive", "> 0", std::to_string(block_size));
}

}  // namespace qh::gptq
