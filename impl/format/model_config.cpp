#include "impl/format/model_config.h"

#include <nlohmann/json.hpp>

#include "impl/core/errors.h"
#include "impl/core/text_file.h"

namespace qh::format {

namespace {

using nlohmann::ordered_json;

const ordered_json* field(const ordered_json& doc, const char* key) {
  const auto it = doc.find(key);
  return it == doc.end() || it->is_null() ? nullptr : &*it;
}

std::int64_t positive(const ordered_json& doc, std::initializer_list<const char*> keys, const std::string& source) {
  for (const char* key : keys) {
    if (const ordered_json* v = field(doc, key)) {
      if (!v->is_number_integer() || v->get<std::int64_t>() <= 0) {
        throw ConfigError(Where{.file = source}, std::string("'") + key + "' must be a positive integer",
                          "an integer > 0", v->dump());
      }
      return v->get<std::int64_t>();
    }
  }
  throw ConfigError(Where{.file = source}, std::string("config.json needs '") + *keys.begin() + "'",
                    "a positive integer", "the key is missing");
}

bool flag(const ordered_json& doc, const char* key, bool fallback, const std::string& source) {
  const ordered_json* v = field(doc, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) {
    throw ConfigError(Where{.file = source}, std::string("'") + key + "' must be a boolean", "true or false",
                      v->dump());
  }
  return v->get<bool>();
}

}  // namespace

ModelConfig parse_model_config(std::string_view json_text, const std::string& source) {
  ordered_json doc;
  try {
    doc = ordered_json::parse(json_text.begin(), json_text.end());
  } catch (const ordered_json::exception& e) {
    throw FormatError(FormatError::Code::Other, Where{.file = source}, "config.json must be valid JSON",
                      "a JSON object", e.what());
  }
  if (!doc.is_object()) {
    throw FormatError(FormatError::Code::Other, Where{.file = source}, "config.json must be a JSON object",
                      "an object", doc.type_name());
  }
  ModelConfig c;
  const ordered_json* type = field(doc, "model_type");
  if (type == nullptr || !type->is_string()) {
    throw ConfigError(Where{.file = source}, "config.json needs 'model_type'", "\"llama\" or \"stripedhyena\"",
                      type == nullptr ? "missing" : type->dump());
  }
  c.model_type = type->get<std::string>();
  const bool hyena = c.model_type == "stripedhyena";
  if (!hyena && c.model_type != "llama") {
    throw ConfigError(Where{.file = source}, "qharness builds the llama-like and hyena-like architectures only",
                      "\"llama\" or \"stripedhyena\"", "\"" + c.model_type + "\"");
  }
  c.vocab_size = positive(doc, {"vocab_size"}, source);
  c.hidden_size = positive(doc, {"hidden_size"}, source);
  c.intermediate_size = positive(doc, {"intermediate_size", "inner_mlp_size"}, source);
  c.num_layers = positive(doc, {"num_hidden_layers", "num_layers"}, source);
  if (hyena) c.state_size = positive(doc, {"state_size"}, source);
  c.attention_bias = flag(doc, "attention_bias", false, source);
  c.mlp_bias = flag(doc, "mlp_bias", false, source);

  const ordered_json* word = field(doc, "tie_word_embeddings");
  const ordered_json* alias = field(doc, "tie_embeddings");
  const bool tie_word = flag(doc, "tie_word_embeddings", false, source);
  const bool tie_alias = flag(doc, "tie_embeddings", false, source);
  if (word != nullptr && alias != nullptr && tie_word != tie_alias) {
    throw ConfigError(Where{.file = source}, "'tie_word_embeddings' and its alias 'tie_embeddings' must agree",
                      "the same value", "tie_word_embeddings=" + word->dump() + ", tie_embeddings=" + alias->dump());
  }
  if (word != nullptr) {
    c.tied = tie_word;
    c.tie_key = "tie_word_embeddings";
  } else if (alias != nullptr) {
    c.tied = tie_alias;
    c.tie_key = "tie_embeddings";
  }
  const ordered_json* dtype = field(doc, "torch_dtype");
  if (dtype == nullptr) dtype = field(doc, "dtype");
  if (dtype != nullptr) {
    if (!dtype->is_string()) {
      throw ConfigError(Where{.file = source}, "'torch_dtype' must be a string", "\"float16\" or \"bfloat16\"",
                        dtype->dump());
    }
    c.dtype = dtype->get<std::string>();
  }
  if (c.dtype != "float16" && c.dtype != "bfloat16" && c.dtype != "float32") {
    throw ConfigError(Where{.file = source}, "torch_dtype must be a floating type", "float16, bfloat16 or float32",
                      "\"" + c.dtype + "\"");
  }
  return c;
}

ModelConfig read_model_config(const std::string& path) {
  return parse_model_config(read_text_file(path, "config.json"), path);
}

std::string model_config_json(const ModelConfig& c) {
  const bool hyena = c.model_type == "stripedhyena";
  ordered_json doc;
  doc["model_type"] = c.model_type;
  doc["architectures"] = {hyena ? "StripedHyenaModelForCausalLM" : "LlamaForCausalLM"};
  doc["vocab_size"] = c.vocab_size;
  doc["hidden_size"] = c.hidden_size;
  doc[hyena ? "inner_mlp_size" : "intermediate_size"] = c.intermediate_size;
  doc[hyena ? "num_layers" : "num_hidden_layers"] = c.num_layers;
  if (hyena) {
    doc["state_size"] = c.state_size;
    doc["tie_embeddings"] = c.tied;  // StripedHyena's own key, on purpose: the loader must understand it
  } else {
    doc["attention_bias"] = c.attention_bias;
    doc["mlp_bias"] = c.mlp_bias;
    doc["tie_word_embeddings"] = c.tied;
  }
  doc["torch_dtype"] = c.dtype;
  return doc.dump(2) + "\n";
}

}  // namespace qh::format
