// Which modules stay in full precision: transformers' `modules_to_not_convert`, bitsandbytes'
// `llm_int8_skip_modules`, GPTQModel's `dynamic` "-:" rules and the user's --skip list, as one rule set.
//
// A key matches a qualified name when it equals the whole name or a run of whole dot-separated components of it:
// "lm_head" matches "lm_head", "poles" matches "backbone.blocks.0.filter.poles", "layers.1.mlp" matches
// "model.layers.1.mlp.up_proj". transformers matches `key + "."` as a plain substring (FORMATS.md section 4), so
// "ayers.0" would match "model.layers.0"; vLLM found the same looseness made "kv_proj" skip "qkv_proj" (vLLM PR
// #9887) and moved to whole components, which is what we do: a key never matches part of a component.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace qh::checkpoint {

bool skip_key_matches(const std::string& key, const std::string& qualified);

class SkipRules {
 public:
  SkipRules() = default;
  explicit SkipRules(std::vector<std::string> keys) : keys_(std::move(keys)) {}
  void add(const std::string& key) { keys_.push_back(key); }
  // The first key matching `qualified`, or nullopt.
  std::optional<std::string> match(const std::string& qualified) const;
  const std::vector<std::string>& keys() const { return keys_; }

 private:
  std::vector<std::string> keys_;
};

}  // namespace qh::checkpoint
