// GPTQ quantization configs, torch-free: quantize_config.json (AutoGPTQ and GPTQModel layouts), quant_config.json
// and config.json["quantization_config"] (transformers GPTQConfig). Format facts: FORMATS.md section 1.7.
// Reading accepts every layout and the compat keys; writing produces GPTQModel's layout, which AutoGPTQ,
// GPTQModel, transformers and vLLM all read.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qh::format {

// How the packed tensors are laid out (FORMATS.md 1.5 v1/v2 zero points, 3.x Marlin). Other formats GPTQModel
// knows (bitblas, ipex, qqq, AWQ's gemm/gemv...) are refused when reading.
enum class CheckpointFormat { Gptq, GptqV2, Marlin };

const char* to_string(CheckpointFormat format);  // "gptq", "gptq_v2", "marlin"
// Exact lower-case name; std::nullopt for anything else.
std::optional<CheckpointFormat> parse_checkpoint_format(std::string_view name);

// One entry of GPTQModel's `dynamic`: a regex over full module names ("model.layers.0.mlp.down_proj") and what it
// does to the modules it matches. In the file the key is the pattern with an optional "+:" (override, the
// default) or "-:" (do not quantize) prefix; the value holds the overrides ({} for a "-:" rule).
struct DynamicRule {
  std::string pattern;  // without the prefix
  bool skip = false;    // "-:" prefix: the module stays unquantized
  std::optional<int> bits;
  std::optional<int> group_size;
  std::optional<bool> desc_act;
  std::optional<bool> sym;
  std::map<std::string, std::string> extra;  // other override keys (pack_dtype, adapter...) -> compact JSON text

  bool operator==(const DynamicRule&) const = default;
};

// What one module is quantized with once `dynamic` has been applied.
struct ModuleSettings {
  int bits = 4;
  int group_size = 128;
  bool desc_act = false;
  bool sym = true;

  bool operator==(const ModuleSettings&) const = default;
};

struct QuantizeConfig {
  int bits = 4;           // 2, 3, 4 or 8
  int group_size = 128;   // -1 (one group per row) or > 0; GPTQModel's default (AutoGPTQ's is -1)
  bool desc_act = false;  // act-order (FORMATS.md 1.6)
  bool sym = true;
  bool lm_head = false;   // GPTQModel: lm_head is quantized too
  std::string quant_method = "gptq";
  CheckpointFormat checkpoint_format = CheckpointFormat::Gptq;
  bool checkpoint_format_stated = true;  // false: no key said it and gptq was inferred (the zero points may decide)
  std::string pack_dtype = "int32";
  // GPTQModel keeps these under `meta`, AutoGPTQ and transformers at top level.
  double damp_percent = 0.01;          // 0 < x < 1
  double damp_auto_increment = 0.0025; // >= 0
  bool static_groups = false;
  bool true_sequential = true;
  std::vector<std::string> quantizer;  // meta.quantizer, "name:version" entries, e.g. {"qharness:0.1.0"}
  std::string uri;                     // meta.uri; "" = not written
  std::optional<std::string> model_name_or_path;    // AutoGPTQ
  std::optional<std::string> model_file_base_name;  // AutoGPTQ: weights file name without ".safetensors"
  std::vector<DynamicRule> dynamic;                 // "-:" rules first, then the others, each in file order
  // transformers' modules_to_not_convert (bitsandbytes' llm_int8_skip_modules reads into it too).
  std::vector<std::string> modules_to_not_convert;
  // Keys this reader does not interpret, key -> compact JSON text, written back unchanged (transformers' use_exllama,
  // backend, model_seqlen...; GPTQModel HEAD's meta.mse, meta.act_group_aware...).
  std::map<std::string, std::string> extra;
  std::map<std::string, std::string> meta_extra;

  std::string source;                 // file (and key) it was read from; names it in errors
  std::vector<std::string> warnings;  // defaults the reader had to assume, e.g. a missing `sym`

  // The rule GPTQModel applies to `module_name` (its dynamic_get): "-:" rules are tried before all others, then
  // the rest in order; a pattern matches when it matches at the START of the name (Python re.match: anchored at
  // the start, not at the end). nullptr when no rule matches. Throws ConfigError for a pattern std::regex refuses.
  const DynamicRule* dynamic_rule_for(std::string_view module_name) const;
  // The module's settings with its rule's overrides applied; std::nullopt when a "-:" rule skips it.
  std::optional<ModuleSettings> settings_for(std::string_view module_name) const;

  bool operator==(const QuantizeConfig&) const = default;
};

// Reads one config dict (the whole text of quantize_config.json / quant_config.json, or a quantization_config
// object) in any of FORMATS.md 1.7's layouts. Throws FormatError naming `source` for text that is not a JSON object
// and ConfigError naming `source` and the key for a value of the wrong type or outside what qharness supports.
QuantizeConfig parse_quantize_config(std::string_view json_text, const std::string& source);

// The checkpoint's config in FORMATS.md 1.7's lookup order: quantize_config.json, quant_config.json, then
// config.json["quantization_config"]. When a quantize_config.json (or quant_config.json) and config.json's
// quantization_config both exist they must agree on bits, group_size, sym, desc_act and checkpoint_format:
// GPTQModel and AutoGPTQ read the first, transformers and vLLM the second. ConfigError when none exists.
QuantizeConfig read_quantize_config(const std::string& checkpoint_dir);

// The checks parse_quantize_config makes on values, for a config built in code; ConfigError naming `source`.
void validate_quantize_config(const QuantizeConfig& config, const std::string& source);

// GPTQModel's quantize_config.json (FORMATS.md 1.7): bits, dynamic (left out when empty), group_size, desc_act, sym,
// lm_head, quant_method, checkpoint_format, pack_dtype, meta {quantizer, uri, damp_percent, damp_auto_increment,
// static_groups, true_sequential, meta_extra...}, then the AutoGPTQ names when set, modules_to_not_convert when not
// empty and `extra`; null and {} values are left out. Two-space indent like Python's json.dumps(indent=2), ending
// in a newline. Validates first (ConfigError).
std::string quantize_config_json(const QuantizeConfig& config);

// Writes DIR/quantize_config.json atomically.
void write_quantize_config(const std::string& dir, const QuantizeConfig& config);

// `base_config_json` (a model's config.json, or "{}") with "quantization_config" set to the same dict as
// quantize_config.json, as GPTQModel's writer does; other keys keep their order, an existing quantization_config
// keeps its position. FormatError naming `source` when the base is not a JSON object.
std::string config_json_with_quantization(std::string_view base_config_json, const QuantizeConfig& config,
                                          const std::string& source);

}  // namespace qh::format
