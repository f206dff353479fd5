#include "impl/checkpoint/skip_rules.h"

namespace qh::checkpoint {

bool skip_key_matches(const std::string& key, const std::string& qualified) {
  if (key.empty()) return false;
  for (std::size_t at = qualified.find(key); at != std::string::npos; at = qualified.find(key, at + 1)) {
    const std::size_t end = at + key.size();
    const bool starts_component = at == 0 || qualified[at - 1] == '.';
    const bool ends_component = end == qualified.size() || qualified[end] == '.';
    if (starts_component && ends_component) return true;
  }
  return false;
}

std::optional<std::string> SkipRules::match(const std::string& qualified) const {
  for (const std::string& key : keys_) {
    if (skip_key_matches(key, qualified)) return key;
  }
  return std::nullopt;
}

}  // namespace qh::checkpoint
