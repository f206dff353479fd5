// Reading follows GPTQModel's QuantizeConfig.from_quant_config / from_pretrained (gptqmodel/quantization/config.py:
// compat synonyms, lower-cased format and method names, lookup order) and AutoGPTQ's BaseQuantizeConfig, with one
// deliberate difference: keys that contradict each other (bits vs w_bit, checkpoint_format vs is_marlin_format...)
// are refused, where GPTQModel lets whichever comes last in the file win. Writing follows GPTQModel's to_dict.
// FORMATS.md section 1.7 throughout.
#include "impl/format/quantize_config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <regex>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"
#include "impl/core/text_file.h"

namespace qh::format {

namespace {

constexpr const char* kConfigFile = "the config file for reading";  // IoError: "cannot open <this>"

using json = nlohmann::ordered_json;  // keeps key order: unknown keys and a base config.json round-trip as they were

// Real configs nest a few levels. nlohmann parses iteratively, but dump() and operator== recurse, so a hostile file
// nested thousands deep is refused before parsing.
constexpr std::size_t kMaxJsonDepth = 64;
// libstdc++ compiles a regex recursively (one level per term and per group) and caps the automaton at 100000
// states; these bounds keep a hostile pattern far from the stack limit. GPTQModel patterns are a few dozen bytes.
constexpr std::size_t kMaxPatternBytes = 1024;
constexpr int kMaxPatternGroupDepth = 32;
// libstdc++ also matches by backtracking, so a pattern can take exponential time on one module name (fuzz_configs:
// .????*\.mlp\..* against "model.layers.0.self_attn.q_proj" ran past libFuzzer's 10 s limit). Refused: a quantifier
// on a quantifier (Python's re refuses it too: "multiple repeat"; a lazy '?' after one is fine), a quantifier on a
// group holding a quantifier or an alternation ((a*)*, (a|a)*: exponential), and more than 3 repeating quantifiers
// (*, +, {m,n}) or 8 quantifiers in all: what is left matches in O(2^5 n^3) steps at worst. GPTQModel's patterns
// (.*\.mlp\..*, model\.layers\.(1[0-5])\..*) use one or two.
constexpr int kMaxPatternRepeats = 3;
constexpr int kMaxPatternQuantifiers = 8;

// GPTQModel's to_dict drops None and {} (FORMATS.md 1.7): the writer leaves such unknown keys out.
bool dropped(const json& v) { return v.is_null() || (v.is_object() && v.empty()); }

// Keys this reader interprets; everything else goes to `extra` / `meta_extra`.
const std::set<std::string, std::less<>> kTopLevelKeys = {
    "bits",          "w_bit",           "group_size",     "q_group_size",         "desc_act",
    "sym",           "lm_head",         "quant_method",   "checkpoint_format",    "format",
    "is_marlin_format", "pack_dtype",   "damp_percent",   "damp_auto_increment",  "static_groups",
    "true_sequential", "model_name_or_path", "model_file_base_name", "dynamic", "meta",
    "modules_to_not_convert", "llm_int8_skip_modules"};
const std::set<std::string, std::less<>> kMetaKeys = {"quantizer",           "uri",           "damp_percent",
                                                      "damp_auto_increment", "static_groups", "true_sequential"};
// Formats GPTQModel (FORMAT enum) or AutoAWQ name that are not GPTQ v1/v2 or Marlin packings.
const std::set<std::string, std::less<>> kUnsupportedFormats = {"gemm", "gemv",    "gemv_fast", "llm-awq", "bitblas",
                                                                "ipex", "qqq",     "gguf",      "fp8"};
// AutoAWQ's quant_config.json `version` values (FORMATS.md 1.7: `version: "gemm"` -> AWQ).
const std::set<std::string, std::less<>> kAwqVersions = {"gemm", "gemv", "gemv_fast"};
constexpr const char* kSupportedFormats = "gptq | gptq_v2 | marlin (qharness supports gptq, gptq_v2, marlin)";

[[noreturn]] void config_error(const std::string& source, std::string rule, std::string expected, std::string found) {
  throw ConfigError(Where{.file = source}, std::move(rule), std::move(expected), std::move(found));
}

[[noreturn]] void format_error(const std::string& source, std::string rule, std::string expected, std::string found) {
  throw FormatError(FormatError::Code::Other, Where{.file = source}, std::move(rule), std::move(expected),
                    std::move(found));
}

std::string dump(const json& v, int indent = -1) { return v.dump(indent, ' ', false, json::error_handler_t::replace); }

// At most `limit` bytes, cut on a UTF-8 character boundary so that messages stay valid UTF-8 (they end up in JSON).
std::string shortened(std::string text, std::size_t limit = 60) {
  if (text.size() <= limit) return text;
  std::size_t cut = limit - 3;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut) + "...";
}

std::string found_json(const json& v) { return std::string(v.type_name()) + " " + shortened(dump(v)); }
std::string in_quotes(std::string_view s) { return "\"" + shortened(std::string(s)) + "\""; }

std::string number_text(double x) { return std::isfinite(x) ? dump(json(x)) : (std::isnan(x) ? "nan" : "inf"); }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

std::size_t nesting_depth(std::string_view text) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '{' || ch == '[') {
      deepest = std::max(deepest, ++depth);
    } else if ((ch == '}' || ch == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

json parse_object(std::string_view text, const std::string& source, const std::string& what) {
  if (nesting_depth(text) > kMaxJsonDepth) {
    format_error(source, what + " nests objects and arrays too deeply",
                 std::to_string(kMaxJsonDepth) + " levels at most", "more");
  }
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    format_error(source, what + " must be valid JSON", "a JSON object", e.what());
  }
  if (!doc.is_object()) format_error(source, what + " must be a JSON object", "an object {...}", found_json(doc));
  return doc;
}

// A member that is present and not null: GPTQModel's to_dict drops None values, so null reads as absent.
const json* member(const json& object, const std::string& key) {
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

int int_value(const json& v, const std::string& key, const std::string& source) {
  const bool fits = v.is_number_unsigned() ? v.get<std::uint64_t>() <= std::uint64_t(INT_MAX)
                    : v.is_number_integer() ? v.get<std::int64_t>() >= INT_MIN && v.get<std::int64_t>() <= INT_MAX
                                            : false;
  if (!fits) config_error(source, key + " must be an integer", "a JSON integer (32-bit)", found_json(v));
  return static_cast<int>(v.get<std::int64_t>());
}

bool bool_value(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_boolean()) config_error(source, key + " must be a boolean", "true | false", found_json(v));
  return v.get<bool>();
}

double number_value(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_number()) config_error(source, key + " must be a number", "a JSON number", found_json(v));
  return v.get<double>();
}

std::string string_value(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_string()) config_error(source, key + " must be a string", "a JSON string", found_json(v));
  return v.get<std::string>();
}

std::vector<std::string> string_list(const json& v, const std::string& key, const std::string& source) {
  if (!v.is_array()) config_error(source, key + " must be a list of strings", "a JSON array of strings", found_json(v));
  std::vector<std::string> out;
  for (const json& item : v) out.push_back(string_value(item, key + "[]", source));
  return out;
}

// The first of `keys` present, with its name. Synonyms present together must agree: GPTQModel would let the last
// one in the file win, so the result would depend on key order.
std::pair<const json*, std::string> aliased(const json& object, std::initializer_list<const char*> keys,
                                            const std::string& source) {
  const json* first = nullptr;
  std::string first_key;
  for (const char* key : keys) {
    const json* v = member(object, key);
    if (v == nullptr) continue;
    if (first == nullptr) {
      first = v;
      first_key = key;
    } else if (*v != *first) {
      config_error(source, first_key + " and " + key + " are synonyms and must agree",
                   first_key + " = " + shortened(dump(*first)), std::string(key) + " = " + shortened(dump(*v)));
    }
  }
  return {first, first_key};
}

// damp_percent, damp_auto_increment, static_groups, true_sequential: top level in AutoGPTQ and transformers, under
// `meta` in GPTQModel. meta wins when both are present: a re-save through transformers' GPTQConfig can add its own
// default (damp_percent 0.1) at top level next to the quantizer's meta.
std::pair<const json*, std::string> top_or_meta(const json& object, const json* meta, const std::string& key,
                                                QuantizeConfig& config) {
  const json* top = member(object, key);
  const json* nested = meta != nullptr ? member(*meta, key) : nullptr;
  if (top != nullptr && nested != nullptr && *top != *nested) {
    config.warnings.push_back(key + ": top-level " + shortened(dump(*top)) + " and meta." + key + " " +
                              shortened(dump(*nested)) + " differ; using meta." + key);
  }
  return nested != nullptr ? std::pair{nested, "meta." + key} : std::pair{top, key};
}

CheckpointFormat format_named(const std::string& name, const std::string& key, const std::string& source) {
  if (const auto format = parse_checkpoint_format(name)) return *format;
  if (kUnsupportedFormats.contains(name)) {
    config_error(source, key + " names a checkpoint format qharness does not read or write", kSupportedFormats,
                 in_quotes(name));
  }
  config_error(source, key + " names an unknown checkpoint format", kSupportedFormats, in_quotes(name));
}

// checkpoint_format and quant_method, with the compat reads of FORMATS.md 1.7: `format` (transformers) is a synonym,
// is_marlin_format: true and quant_method "marlin" mean Marlin, a missing format means gptq (v1).
void read_format(const json& object, QuantizeConfig& config, const std::string& source) {
  struct Claim {
    std::string key, value;
    CheckpointFormat format;
  };
  std::vector<Claim> claims;
  if (const auto [v, key] = aliased(object, {"checkpoint_format", "format"}, source); v != nullptr) {
    const std::string name = lower(string_value(*v, key, source));
    claims.push_back({key, in_quotes(name), format_named(name, key, source)});
  }
  if (const json* v = member(object, "is_marlin_format"); v != nullptr && bool_value(*v, "is_marlin_format", source)) {
    claims.push_back({"is_marlin_format", "true", CheckpointFormat::Marlin});
  }
  if (const json* v = member(object, "quant_method")) {
    const std::string method = lower(string_value(*v, "quant_method", source));
    if (method == "marlin") {
      claims.push_back({"quant_method", "\"marlin\"", CheckpointFormat::Marlin});
      config.warnings.push_back("quant_method \"marlin\": read as quant_method gptq with checkpoint_format marlin");
    } else if (method != "gptq") {
      config_error(source, "quant_method must be gptq (or marlin: GPTQ in Marlin format); qharness reads GPTQ only",
                   "\"gptq\" | \"marlin\"", in_quotes(method));
    }
  }
  if (const json* v = member(object, "version"); v != nullptr && v->is_string()) {
    const std::string version = lower(v->get<std::string>());
    if (kAwqVersions.contains(version)) {
      config_error(source, "version " + in_quotes(version) + " marks an AWQ (AutoAWQ) config; qharness reads GPTQ only",
                   kSupportedFormats, "version " + in_quotes(version));
    }
  }
  if (claims.empty()) {
    config.checkpoint_format_stated = false;
    config.warnings.push_back("checkpoint_format missing: inferred gptq (v1) as AutoGPTQ and GPTQModel do");
    return;
  }
  for (const Claim& claim : claims) {
    if (claim.format != claims.front().format) {
      config_error(source, claims.front().key + " and " + claim.key + " name different checkpoint formats",
                   claims.front().key + " " + claims.front().value, claim.key + " " + claim.value);
    }
  }
  config.checkpoint_format = claims.front().format;
}

std::vector<DynamicRule> read_dynamic(const json& v, const std::string& source) {
  if (!v.is_object()) {
    config_error(source, "dynamic must map \"[+:|-:]regex\" to overrides", "a JSON object", found_json(v));
  }
  std::vector<DynamicRule> rules;
  for (const auto& entry : v.items()) {
    const std::string& key = entry.key();
    const std::string where = "dynamic[" + in_quotes(key) + "]";
    DynamicRule rule;
    std::string_view pattern = key;
    if (pattern.starts_with("-:")) {
      rule.skip = true;
      pattern.remove_prefix(2);
    } else if (pattern.starts_with("+:")) {
      pattern.remove_prefix(2);
    }
    rule.pattern = std::string(pattern);
    const json& overrides = entry.value();
    if (!overrides.is_null() && !overrides.is_object()) {
      config_error(source, where + " must be an object of overrides", "a JSON object ({} for a \"-:\" rule)",
                   found_json(overrides));
    }
    if (overrides.is_object()) {
      for (const auto& item : overrides.items()) {
        const std::string& name = item.key();
        const json& value = item.value();
        if (value.is_null()) continue;
        if (name == "bits") rule.bits = int_value(value, where + ".bits", source);
        else if (name == "group_size") rule.group_size = int_value(value, where + ".group_size", source);
        else if (name == "desc_act") rule.desc_act = bool_value(value, where + ".desc_act", source);
        else if (name == "sym") rule.sym = bool_value(value, where + ".sym", source);
        else rule.extra[name] = dump(value);
      }
    }
    rules.push_back(std::move(rule));
  }
  // GPTQModel's __post_init__ moves "-:" rules ahead of the others (file order kept within each kind); the writer
  // writes them in that order, so reading the same normalization keeps a write/read round trip exact
  // (fuzz_configs found a skip rule after an override coming back reordered).
  std::stable_partition(rules.begin(), rules.end(), [](const DynamicRule& r) { return r.skip; });
  return rules;
}

QuantizeConfig read_object(const json& object, const std::string& source) {
  QuantizeConfig c;
  c.source = source;
  const json* meta = member(object, "meta");
  if (meta != nullptr && !meta->is_object()) {
    config_error(source, "meta must be an object", "a JSON object", found_json(*meta));
  }

  if (const auto [v, key] = aliased(object, {"bits", "w_bit"}, source); v != nullptr) {
    c.bits = int_value(*v, key, source);
  }
  if (const auto [v, key] = aliased(object, {"group_size", "q_group_size"}, source); v != nullptr) {
    c.group_size = int_value(*v, key, source);
  } else {
    c.warnings.push_back("group_size missing: defaulting to 128 as GPTQModel does (AutoGPTQ's default is -1)");
  }
  if (const json* v = member(object, "desc_act")) {
    c.desc_act = bool_value(*v, "desc_act", source);
  } else {
    c.warnings.push_back("desc_act missing: defaulting to false as transformers' GPTQConfig does (AutoGPTQ and "
                         "GPTQModel 2.x default to true; g_idx shows the real column order)");
  }
  if (const json* v = member(object, "sym")) {
    c.sym = bool_value(*v, "sym", source);
  } else {
    c.warnings.push_back("sym missing: defaulting to true as AutoGPTQ does");
  }
  if (const json* v = member(object, "lm_head")) c.lm_head = bool_value(*v, "lm_head", source);
  read_format(object, c, source);
  if (const json* v = member(object, "pack_dtype")) c.pack_dtype = lower(string_value(*v, "pack_dtype", source));

  if (const auto [v, key] = top_or_meta(object, meta, "damp_percent", c); v) {
    c.damp_percent = number_value(*v, key, source);
  }
  if (const auto [v, key] = top_or_meta(object, meta, "damp_auto_increment", c); v) {
    c.damp_auto_increment = number_value(*v, key, source);
  }
  if (const auto [v, key] = top_or_meta(object, meta, "static_groups", c); v) {
    c.static_groups = bool_value(*v, key, source);
  }
  if (const auto [v, key] = top_or_meta(object, meta, "true_sequential", c); v) {
    c.true_sequential = bool_value(*v, key, source);
  }
  if (meta != nullptr) {
    if (const json* v = member(*meta, "quantizer")) {
      // GPTQModel's meta_get_versionable accepts one "name:version" string as well as a list.
      c.quantizer = v->is_string() ? std::vector{v->get<std::string>()} : string_list(*v, "meta.quantizer", source);
    }
    if (const json* v = member(*meta, "uri")) c.uri = string_value(*v, "meta.uri", source);
    for (const auto& item : meta->items()) {
      if (!kMetaKeys.contains(item.key()) && !item.value().is_null()) c.meta_extra[item.key()] = dump(item.value());
    }
  }

  if (const json* v = member(object, "model_name_or_path")) {
    c.model_name_or_path = string_value(*v, "model_name_or_path", source);
  }
  if (const json* v = member(object, "model_file_base_name")) {
    c.model_file_base_name = string_value(*v, "model_file_base_name", source);
  }
  if (const json* v = member(object, "dynamic")) c.dynamic = read_dynamic(*v, source);
  for (const char* key : {"modules_to_not_convert", "llm_int8_skip_modules"}) {
    if (const json* v = member(object, key)) {
      for (std::string& name : string_list(*v, key, source)) {
        if (std::find(c.modules_to_not_convert.begin(), c.modules_to_not_convert.end(), name) ==
            c.modules_to_not_convert.end()) {
          c.modules_to_not_convert.push_back(std::move(name));
        }
      }
    }
  }
  for (const auto& item : object.items()) {
    // Not kept when the writer would drop it, so that what is read is what is written (fuzz_configs found this).
    if (!kTopLevelKeys.contains(item.key()) && !dropped(item.value())) c.extra[item.key()] = dump(item.value());
  }
  return c;
}

std::string rule_key(const DynamicRule& rule) { return (rule.skip ? "-:" : "+:") + rule.pattern; }

// What makes a pattern slow to compile or to match (compile_pattern's limits say why).
struct PatternShape {
  int deepest = 0;          // group nesting
  int repeats = 0;          // *, +, {m,} and {m,n} with n > m
  int quantifiers = 0;      // those and ?, {n}
  std::string unsafe;       // the first quantifier on a quantifier or on a group with a choice in it, described
  std::string unparsable;   // the first construct libstdc++'s regex parser mishandles: a back-reference (a digit
                            // after '\\'; a long one overflows its int, which UBSan reports: fuzz_configs found it)
                            // or a count of more than 4 digits after a '{', closed or not (the parser reads the
                            // number before it looks for the '}': fuzz_configs found a 40-digit one overflowing)
};

// Whether the digits and commas after the '{' at pattern[i] hold a run of more than 4 digits.
bool long_count_at(std::string_view p, std::size_t i) {
  std::size_t run = 0;
  for (std::size_t j = i + 1; j < p.size() && (std::isdigit(static_cast<unsigned char>(p[j])) || p[j] == ','); ++j) {
    run = p[j] == ',' ? 0 : run + 1;
    if (run > 4) return true;
  }
  return false;
}

// The length of a quantifier starting at pattern[i] (0: none), and whether it repeats (more than one count).
std::size_t quantifier_at(std::string_view p, std::size_t i, bool& repeats) {
  if (p[i] == '*' || p[i] == '+') return repeats = true, 1;
  if (p[i] == '?') return repeats = false, 1;
  if (p[i] != '{') return 0;
  const std::size_t close = p.find('}', i);
  if (close == std::string_view::npos) return 0;
  const std::string_view body = p.substr(i + 1, close - i - 1);
  if (body.empty() || body.find_first_not_of("0123456789,") != std::string_view::npos || body[0] == ',') return 0;
  const std::size_t comma = body.find(',');
  repeats = comma != std::string_view::npos && body.substr(comma + 1) != body.substr(0, comma);
  return close - i + 1;
}

PatternShape shape_of(std::string_view p) {
  PatternShape s;
  // Per open group: whether it holds a quantifier or an alternation; `last_group_choice` for the group just closed.
  std::vector<bool> holds_choice = {false};
  bool after_quantifier = false, last_group_choice = false, after_group = false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '{' && long_count_at(p, i) && s.unparsable.empty()) {
      s.unparsable = "a repeat count of more than 4 digits at offset " + std::to_string(i);
    }
    bool repeats = false;
    if (const std::size_t n = quantifier_at(p, i, repeats); n > 0) {
      const bool lazy = i + n < p.size() && p[i + n] == '?';
      if (after_quantifier && s.unsafe.empty()) s.unsafe = "a quantifier on a quantifier at offset " + std::to_string(i);
      if (after_group && last_group_choice && s.unsafe.empty()) {
        s.unsafe = "a quantifier on a group holding a quantifier or '|' at offset " + std::to_string(i);
      }
      ++s.quantifiers;
      s.repeats += repeats;
      holds_choice.back() = true;
      after_quantifier = true, after_group = false;
      i += n - 1 + lazy;
      continue;
    }
    after_quantifier = after_group = false;
    auto check_escape = [&](std::size_t at) {
      if (at + 1 < p.size() && std::isdigit(static_cast<unsigned char>(p[at + 1])) && s.unparsable.empty()) {
        s.unparsable = "a back-reference '\\" + std::string(1, p[at + 1]) + "' at offset " + std::to_string(at);
      }
    };
    if (p[i] == '\\') {
      check_escape(i);
      ++i;
    } else if (p[i] == '[') {  // a class is one atom: skip to its closing ']' (escapes inside included)
      for (++i; i < p.size() && p[i] != ']'; ++i) {
        if (p[i] == '\\') check_escape(i), ++i;
      }
    } else if (p[i] == '(') {
      holds_choice.push_back(false);
      s.deepest = std::max(s.deepest, int(holds_choice.size()) - 1);
    } else if (p[i] == ')' && holds_choice.size() > 1) {
      last_group_choice = holds_choice.back();
      holds_choice.pop_back();
      holds_choice.back() = holds_choice.back() || last_group_choice;
      after_group = true;
    } else if (p[i] == '|') {
      holds_choice.back() = true;
    }
  }
  return s;
}

// Python's re and ECMAScript agree on what GPTQModel patterns use (., *, +, ?, [], (), |, \d, \.); Python-only
// syntax ((?P<name>...), (?i), \A, \Z) is refused here rather than matched differently.
std::regex compile_pattern(const DynamicRule& rule, const std::string& source) {
  const std::string key = "dynamic[" + in_quotes(rule_key(rule)) + "]";
  const PatternShape shape = shape_of(rule.pattern);
  if (rule.pattern.size() > kMaxPatternBytes || shape.deepest > kMaxPatternGroupDepth) {
    config_error(source, key + " pattern is too large to compile safely",
                 std::to_string(kMaxPatternBytes) + " bytes and " + std::to_string(kMaxPatternGroupDepth) +
                     " nested groups at most",
                 std::to_string(rule.pattern.size()) + " bytes, " + std::to_string(shape.deepest) + " nested groups");
  }
  if (!shape.unparsable.empty()) {
    config_error(source, key + " pattern uses what qharness's regex engine cannot parse safely",
                 "no back-reference (\\1 ...) and repeat counts of at most 4 digits (GPTQModel's patterns use "
                 "neither)",
                 shape.unparsable);
  }
  if (!shape.unsafe.empty() || shape.repeats > kMaxPatternRepeats || shape.quantifiers > kMaxPatternQuantifiers) {
    config_error(source, key + " pattern could take exponential time to match (std::regex backtracks)",
                 "no quantifier on a quantifier or on a group holding one or an alternation, at most " +
                     std::to_string(kMaxPatternRepeats) + " of *, +, {m,n} and " +
                     std::to_string(kMaxPatternQuantifiers) + " quantifiers in all",
                 shape.unsafe.empty() ? std::to_string(shape.repeats) + " repeating of " +
                                            std::to_string(shape.quantifiers) + " quantifiers"
                                      : shape.unsafe);
  }
  try {
    return std::regex(rule.pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    config_error(source, key + " must be a regular expression std::regex (ECMAScript) accepts",
                 "a valid regex without Python-only syntax", in_quotes(rule.pattern) + " (" + e.what() + ")");
  }
}

void check_bits(int bits, const std::string& key, const std::string& source) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    config_error(source, key + " must be 2, 3, 4 or 8 (AutoGPTQ's choices)", "2 | 3 | 4 | 8", std::to_string(bits));
  }
}

void check_group_size(int group_size, const std::string& key, const std::string& source) {
  if (group_size != -1 && group_size <= 0) {
    config_error(source, key + " must be -1 (one group per row) or positive", "-1 or > 0", std::to_string(group_size));
  }
}

json parse_stored(const std::string& text, const std::string& key, const std::string& source) {
  if (nesting_depth(text) <= kMaxJsonDepth) {
    json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!v.is_discarded()) return v;
  }
  config_error(source, key + " must hold JSON text", "compact JSON", in_quotes(text));
}

json dynamic_json(const std::vector<DynamicRule>& rules, const std::string& source) {
  json out = json::object();
  // "-:" rules first, as GPTQModel's __post_init__ orders them: vLLM's get_dynamic_override walks the dict in file
  // order without reordering, so this is what makes both loaders pick the same rule.
  for (const bool skip_pass : {true, false}) {
    for (const DynamicRule& rule : rules) {
      if (rule.skip != skip_pass) continue;
      json overrides = json::object();
      if (rule.bits) overrides["bits"] = *rule.bits;
      if (rule.group_size) overrides["group_size"] = *rule.group_size;
      if (rule.desc_act) overrides["desc_act"] = *rule.desc_act;
      if (rule.sym) overrides["sym"] = *rule.sym;
      for (const auto& [name, text] : rule.extra) {
        if (!overrides.contains(name)) overrides[name] = parse_stored(text, rule_key(rule) + "." + name, source);
      }
      out[rule_key(rule)] = std::move(overrides);
    }
  }
  return out;
}

json config_dict(const QuantizeConfig& c, const std::string& source) {
  validate_quantize_config(c, source);
  json out = json::object();
  out["bits"] = c.bits;
  if (!c.dynamic.empty()) out["dynamic"] = dynamic_json(c.dynamic, source);
  out["group_size"] = c.group_size;
  out["desc_act"] = c.desc_act;
  out["sym"] = c.sym;
  out["lm_head"] = c.lm_head;
  out["quant_method"] = c.quant_method;
  out["checkpoint_format"] = to_string(c.checkpoint_format);
  out["pack_dtype"] = c.pack_dtype;
  json meta = json::object();
  if (!c.quantizer.empty()) meta["quantizer"] = c.quantizer;
  if (!c.uri.empty()) meta["uri"] = c.uri;
  meta["damp_percent"] = c.damp_percent;
  meta["damp_auto_increment"] = c.damp_auto_increment;
  meta["static_groups"] = c.static_groups;
  meta["true_sequential"] = c.true_sequential;
  for (const auto& [key, text] : c.meta_extra) {
    if (!meta.contains(key)) meta[key] = parse_stored(text, "meta." + key, source);
  }
  out["meta"] = std::move(meta);
  if (c.model_name_or_path) out["model_name_or_path"] = *c.model_name_or_path;
  if (c.model_file_base_name) out["model_file_base_name"] = *c.model_file_base_name;
  if (!c.modules_to_not_convert.empty()) out["modules_to_not_convert"] = c.modules_to_not_convert;
  for (const auto& [key, text] : c.extra) {
    if (kTopLevelKeys.contains(key)) continue;  // a known field always comes from its member, never from `extra`
    json value = parse_stored(text, key, source);
    if (!dropped(value)) out[key] = std::move(value);
  }
  return out;
}

}  // namespace

const char* to_string(CheckpointFormat format) {
  switch (format) {
    case CheckpointFormat::Gptq: return "gptq";
    case CheckpointFormat::GptqV2: return "gptq_v2";
    case CheckpointFormat::Marlin: return "marlin";
  }
  return "?";
}

std::optional<CheckpointFormat> parse_checkpoint_format(std::string_view name) {
  for (const CheckpointFormat f : {CheckpointFormat::Gptq, CheckpointFormat::GptqV2, CheckpointFormat::Marlin}) {
    if (name == to_string(f)) return f;
  }
  return std::nullopt;
}

const DynamicRule* QuantizeConfig::dynamic_rule_for(std::string_view module_name) const {
  // GPTQModel (gptqmodel/quantization/config.py): __post_init__ moves the keys starting with "-" ahead of the others,
  // then dynamic_get returns the first rule whose pattern re.match()es the name, i.e. matches at its start.
  // match_continuous is std::regex's re.match: the match must begin at the first character, and may end anywhere.
  for (const bool skip_pass : {true, false}) {
    for (const DynamicRule& rule : dynamic) {
      if (rule.skip != skip_pass) continue;
      const std::regex re = compile_pattern(rule, source);
      if (std::regex_search(module_name.begin(), module_name.end(), re, std::regex_constants::match_continuous)) {
        return &rule;
      }
    }
  }
  return nullptr;
}

std::optional<ModuleSettings> QuantizeConfig::settings_for(std::string_view module_name) const {
  ModuleSettings s{.bits = bits, .group_size = group_size, .desc_act = desc_act, .sym = sym};
  const DynamicRule* rule = dynamic_rule_for(module_name);
  if (rule == nullptr) return s;
  if (rule->skip) return std::nullopt;
  // The keys GPTQModel's create_quant_layer takes from a positive match; the rest inherit the base config.
  s.bits = rule->bits.value_or(bits);
  s.group_size = rule->group_size.value_or(group_size);
  s.desc_act = rule->desc_act.value_or(desc_act);
  s.sym = rule->sym.value_or(sym);
  return s;
}

void validate_quantize_config(const QuantizeConfig& c, const std::string& source) {
  check_bits(c.bits, "bits", source);
  check_group_size(c.group_size, "group_size", source);
  if (c.quant_method != "gptq") {
    config_error(source, "quant_method must be gptq (a Marlin checkpoint is gptq with checkpoint_format marlin)",
                 "\"gptq\"", in_quotes(c.quant_method));
  }
  if (c.pack_dtype != "int32") {
    config_error(source, "pack_dtype must be int32, the only packing AutoGPTQ-compatible loaders read", "\"int32\"",
                 in_quotes(c.pack_dtype));
  }
  if (!(c.damp_percent > 0 && c.damp_percent < 1)) {
    config_error(source, "damp_percent must lie strictly between 0 and 1", "0 < damp_percent < 1",
                 number_text(c.damp_percent));
  }
  if (!(c.damp_auto_increment >= 0) || !std::isfinite(c.damp_auto_increment)) {
    config_error(source, "damp_auto_increment must not be negative", "a finite number >= 0",
                 number_text(c.damp_auto_increment));
  }
  std::set<std::string> keys;
  for (const DynamicRule& rule : c.dynamic) {
    const std::string key = "dynamic[" + in_quotes(rule_key(rule)) + "]";
    if (!keys.insert(rule_key(rule)).second) {
      config_error(source, key + " appears twice (\"x\" and \"+:x\" are the same rule)", "one rule per pattern", "two");
    }
    compile_pattern(rule, source);
    if (rule.bits) check_bits(*rule.bits, key + ".bits", source);
    if (rule.group_size) check_group_size(*rule.group_size, key + ".group_size", source);
  }
}

QuantizeConfig parse_quantize_config(std::string_view json_text, const std::string& source) {
  QuantizeConfig config = read_object(parse_object(json_text, source, "a quantization config"), source);
  validate_quantize_config(config, source);
  return config;
}

QuantizeConfig read_quantize_config(const std::string& checkpoint_dir) {
  namespace fs = std::filesystem;
  std::optional<QuantizeConfig> standalone;
  for (const char* name : {"quantize_config.json", "quant_config.json"}) {
    const std::string path = (fs::path(checkpoint_dir) / name).string();
    if (std::error_code ec; fs::is_regular_file(path, ec)) {
      standalone = parse_quantize_config(read_text_file(path, kConfigFile), path);
      break;
    }
  }
  std::optional<QuantizeConfig> embedded;
  const std::string config_path = (fs::path(checkpoint_dir) / "config.json").string();
  std::error_code ec;
  const bool has_config = fs::is_regular_file(config_path, ec);
  if (has_config) {
    const json config = parse_object(read_text_file(config_path, kConfigFile), config_path, "config.json");
    if (const json* q = member(config, "quantization_config")) {
      const std::string source = config_path + "[\"quantization_config\"]";
      if (!q->is_object()) {
        format_error(source, "quantization_config must be a JSON object", "an object {...}", found_json(*q));
      }
      embedded = read_object(*q, source);
      validate_quantize_config(*embedded, source);
    }
  }
  if (standalone && embedded) {
    // The two files are read by different loaders; if they disagree, the model loads differently depending on which.
    const auto text = [](bool b) { return std::string(b ? "true" : "false"); };
    const std::pair<const char*, std::pair<std::string, std::string>> fields[] = {
        {"bits", {std::to_string(standalone->bits), std::to_string(embedded->bits)}},
        {"group_size", {std::to_string(standalone->group_size), std::to_string(embedded->group_size)}},
        {"sym", {text(standalone->sym), text(embedded->sym)}},
        {"desc_act", {text(standalone->desc_act), text(embedded->desc_act)}},
        {"checkpoint_format", {to_string(standalone->checkpoint_format), to_string(embedded->checkpoint_format)}},
    };
    for (const auto& [key, values] : fields) {
      if (values.first != values.second) {
        config_error(standalone->source,
                     std::string(key) + " differs between " + standalone->source + " and " + embedded->source +
                         " (GPTQModel and AutoGPTQ read the first, transformers and vLLM the second)",
                     std::string(key) + " " + values.first + " in " + standalone->source,
                     std::string(key) + " " + values.second + " in " + embedded->source);
      }
    }
  }
  if (standalone) return *std::move(standalone);
  if (embedded) return *std::move(embedded);
  config_error(checkpoint_dir, "no GPTQ quantization config in the checkpoint directory (FORMATS.md 1.7 lookup order)",
               "quantize_config.json, quant_config.json or config.json with \"quantization_config\"",
               has_config ? "config.json without quantization_config" : "none of them");
}

std::string quantize_config_json(const QuantizeConfig& config) {
  return dump(config_dict(config, config.source), 2) + "\n";
}

void write_quantize_config(const std::string& dir, const QuantizeConfig& config) {
  const std::string path = (std::filesystem::path(dir) / "quantize_config.json").string();
  write_file_atomically(path, dump(config_dict(config, path), 2) + "\n");
}

std::string config_json_with_quantization(std::string_view base_config_json, const QuantizeConfig& config,
                                          const std::string& source) {
  json base = parse_object(base_config_json, source, "config.json");
  base["quantization_config"] = config_dict(config, source);
  return dump(base, 2) + "\n";
}

}  // namespace qh::format
