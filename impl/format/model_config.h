// The model half of config.json (torch-free): which synthetic architecture, its sizes, its dtype, and whether its
// output head is tied to its input embeddings. Tying is read from transformers' `tie_word_embeddings` and from
// `tie_embeddings`, the key StripedHyena's config uses instead (FORMATS.md section 4: the evo-1 loading failure);
// a config that sets both differently is refused rather than guessed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace qh::format {

struct ModelConfig {
  std::string model_type = "llama";  // "llama" (llama-like) or "stripedhyena" (hyena-like)
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;
  std::int64_t intermediate_size = 0;  // StripedHyena: inner_mlp_size
  std::int64_t num_layers = 0;         // num_hidden_layers; StripedHyena: num_layers
  std::int64_t state_size = 0;         // hyena filter order (poles/residues per channel)
  bool attention_bias = false;         // llama: bias on q/k/v/o
  bool mlp_bias = false;               // llama: bias on gate/up/down
  bool tied = false;                   // output head shares the input embedding's weight
  std::string tie_key;                 // the config key that said so ("tie_word_embeddings", "tie_embeddings")
  std::string dtype = "float16";       // torch_dtype (newer transformers: dtype)
};

// Reads config.json text; `source` names the file in errors (ConfigError for missing/invalid fields, FormatError
// for text that is not a JSON object). The architecture's defaults follow transformers' LlamaConfig
// (tie_word_embeddings false) and StripedHyena's config (tie_embeddings).
ModelConfig parse_model_config(std::string_view json_text, const std::string& source);
ModelConfig read_model_config(const std::string& path);
// config.json text for `config` (2-space indent), with the keys parse_model_config reads.
std::string model_config_json(const ModelConfig& config);

}  // namespace qh::format
