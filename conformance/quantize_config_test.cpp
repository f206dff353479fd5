// impl/format/quantize_config: reading every quantize_config layout of FORMATS.md 1.7 (AutoGPTQ, GPTQModel,
// transformers' config.json) with its compat keys, refusing what qharness cannot load with the key and the file
// named, writing GPTQModel's layout, and GPTQModel's `dynamic` per-module rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "conformance/quantize_config_round_trip.h"
#include "conformance/testing.h"
#include "impl/core/atomic_file.h"
#include "impl/core/errors.h"
#include "impl/format/quantize_config.h"

namespace qh::format {

// Readable failures: gtest prints these instead of raw bytes.
void PrintTo(const QuantizeConfig& c, std::ostream* os) {
  try {
    *os << quantize_config_json(c);
  } catch (const std::exception& e) {
    *os << "<config that does not validate: " << e.what() << ">";
  }
  *os << "source '" << c.source << "', " << c.warnings.size() << " warnings, dynamic order:";
  for (const DynamicRule& r : c.dynamic) *os << ' ' << (r.skip ? "-:" : "+:") << r.pattern;
}

void PrintTo(const ModuleSettings& s, std::ostream* os) {
  *os << "{bits " << s.bits << ", group_size " << s.group_size << ", desc_act " << s.desc_act << ", sym " << s.sym
      << "}";
}

namespace {

using nlohmann::ordered_json;

const std::string kSource = "ckpt/quantize_config.json";

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

bool has_warning(const QuantizeConfig& c, std::string_view part) {
  return std::any_of(c.warnings.begin(), c.warnings.end(), [&](const std::string& w) { return contains(w, part); });
}

// The message of the ConfigError that parsing `text` throws; a test failure for no error or another type.
std::string config_error_of(std::string_view text) {
  try {
    parse_quantize_config(text, kSource);
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a ConfigError for " << text << ", got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected a ConfigError for " << text;
  return "";
}

std::vector<std::string> keys_of(const ordered_json& object) {
  std::vector<std::string> keys;
  for (const auto& item : object.items()) keys.push_back(item.key());
  return keys;
}

// A config with every field away from its default, for round trips.
QuantizeConfig everything_set() {
  QuantizeConfig c;
  c.bits = 3;
  c.group_size = 64;
  c.desc_act = true;
  c.sym = false;
  c.lm_head = true;
  c.checkpoint_format = CheckpointFormat::GptqV2;
  c.damp_percent = 0.05;
  c.damp_auto_increment = 0.01;
  c.static_groups = true;
  c.true_sequential = false;
  c.quantizer = {"qharness:0.1.0"};
  c.uri = "https://example.org/qharness";
  c.model_name_or_path = "org/model";
  c.model_file_base_name = "model";
  c.dynamic = {DynamicRule{.pattern = ".*lm_head", .skip = true},
               DynamicRule{.pattern = R"(.*mlp\.down_proj)",
                           .bits = 8,
                           .group_size = 32,
                           .extra = {{"pack_dtype", "\"int32\""}}},
               DynamicRule{.pattern = R"(model\.layers\.0\.)", .desc_act = false, .sym = true}};
  c.modules_to_not_convert = {"lm_head"};
  c.extra = {{"use_exllama", "false"}, {"model_seqlen", "2048"}};
  c.meta_extra = {{"mse", "0.0"}};
  c.source = kSource;
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the three layouts

// AutoGPTQ's BaseQuantizeConfig.to_dict writes exactly these 11 keys, damp_percent & co. at top level (FORMATS 1.7).
TEST(QuantizeConfigRead, AutoGptqToDictKeySet) {
  const QuantizeConfig c = parse_quantize_config(R"({"bits": 3, "group_size": 64, "damp_percent": 0.05,
      "desc_act": true, "static_groups": true, "sym": false, "true_sequential": false, "model_name_or_path": null,
      "model_file_base_name": "gptq_model-3bit-64g", "quant_method": "gptq", "checkpoint_format": "gptq"})",
                                                 kSource);
  EXPECT_EQ(c.bits, 3);
  EXPECT_EQ(c.group_size, 64);
  EXPECT_EQ(c.damp_percent, 0.05);
  EXPECT_TRUE(c.desc_act);
  EXPECT_TRUE(c.static_groups);
  EXPECT_FALSE(c.sym);
  EXPECT_FALSE(c.true_sequential);
  EXPECT_EQ(c.model_name_or_path, std::nullopt);
  EXPECT_EQ(c.model_file_base_name, "gptq_model-3bit-64g");
  EXPECT_EQ(c.quant_method, "gptq");
  EXPECT_EQ(c.checkpoint_format, CheckpointFormat::Gptq);
  EXPECT_TRUE(c.extra.empty()) << "every AutoGPTQ key has a field";
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(c.source, kSource);
}

// GPTQModel keeps damp_percent, damp_auto_increment, static_groups, true_sequential, quantizer and uri under `meta`.
TEST(QuantizeConfigRead, GptqModelMetaFieldsLandInTheirFields) {
  const QuantizeConfig c = parse_quantize_config(R"({"bits": 8, "dynamic": {"-:.*lm_head": {}},
      "group_size": 32, "desc_act": false, "sym": true, "lm_head": true, "quant_method": "gptq",
      "checkpoint_format": "gptq_v2", "pack_dtype": "int32",
      "meta": {"quantizer": ["gptqmodel:2.2.0"], "uri": "https://github.com/modelcloud/gptqmodel",
               "damp_percent": 0.02, "damp_auto_increment": 0.005, "static_groups": true,
               "true_sequential": false, "mse": 0.0}})",
                                                 kSource);
  EXPECT_EQ(c.bits, 8);
  EXPECT_EQ(c.group_size, 32);
  EXPECT_TRUE(c.lm_head);
  EXPECT_EQ(c.checkpoint_format, CheckpointFormat::GptqV2);
  EXPECT_EQ(c.damp_percent, 0.02);
  EXPECT_EQ(c.damp_auto_increment, 0.005);
  EXPECT_TRUE(c.static_groups);
  EXPECT_FALSE(c.true_sequential);
  EXPECT_EQ(c.quantizer, std::vector<std::string>{"gptqmodel:2.2.0"});
  EXPECT_EQ(c.uri, "https://github.com/modelcloud/gptqmodel");
  EXPECT_EQ(c.meta_extra, (std::map<std::string, std::string>{{"mse", "0.0"}}));
  ASSERT_EQ(c.dynamic.size(), 1u);
  EXPECT_EQ(c.dynamic[0], (DynamicRule{.pattern = ".*lm_head", .skip = true}));
  EXPECT_TRUE(c.extra.empty());
  EXPECT_TRUE(c.warnings.empty());
}

// transformers' GPTQConfig in config.json: `format` plus `checkpoint_format` re-added by to_dict, and its own keys.
TEST(QuantizeConfigRead, TransformersConfigJsonWithFormat) {
  testing::TempDir dir;
  write_file_atomically(dir.file("config.json"), R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
      "quantization_config": {"bits": 4, "group_size": 128, "damp_percent": 0.1, "desc_act": false, "sym": true,
        "true_sequential": true, "quant_method": "gptq", "format": "gptq_v2", "checkpoint_format": "gptq_v2",
        "use_exllama": true, "model_seqlen": 2048, "block_name_to_quantize": "model.layers",
        "modules_in_block_to_quantize": null, "cache_block_outputs": true, "backend": "auto",
        "meta": {"quantizer": ["optimum:1.23.0", "gptqmodel:1.4.0"]}}})");
  const QuantizeConfig c = read_quantize_config(dir.path());
  EXPECT_EQ(c.checkpoint_format, CheckpointFormat::GptqV2);
  EXPECT_EQ(c.damp_percent, 0.1);
  EXPECT_EQ(c.quantizer, (std::vector<std::string>{"optimum:1.23.0", "gptqmodel:1.4.0"}));
  EXPECT_EQ(c.extra, (std::map<std::string, std::string>{{"backend", "\"auto\""},
                                                         {"block_name_to_quantize", "\"model.layers\""},
                                                         {"cache_block_outputs", "true"},
                                                         {"model_seqlen", "2048"},
                                                         {"use_exllama", "true"}}))
      << "null (modules_in_block_to_quantize) reads as absent, as GPTQModel drops None";
  EXPECT_EQ(c.source, dir.file("config.json") + "[\"quantization_config\"]");
}

// ---------------------------------------------------------------------------------------------------------------
// Compat reads (FORMATS.md 1.7)

// AutoGPTQ <= 0.7 wrote is_marlin_format: true instead of checkpoint_format "marlin".
TEST(QuantizeConfigCompat, IsMarlinFormatMeansMarlin) {
  const QuantizeConfig c =
      parse_quantize_config(R"({"bits": 4, "group_size": 128, "desc_act": false, "sym": true,
                                 "is_marlin_format": true})",
                            kSource);
  EXPECT_EQ(c.checkpoint_format, CheckpointFormat::Marlin);
  EXPECT_FALSE(has_warning(c, "checkpoint_format")) << "the format is known, not inferred";
}

// Some hub models say quant_method "marlin": a GPTQ checkpoint in Marlin format.
TEST(QuantizeConfigCompat, QuantMethodMarlinMeansMarlinFormat) {
  const QuantizeConfig c =
      parse_quantize_config(R"({"bits": 4, "group_size": 128, "desc_act": false, "sym": true,
                                 "quant_method": "marlin"})",
                            kSource);
  EXPECT_EQ(c.checkpoint_format, CheckpointFormat::Marlin);
  EXPECT_EQ(c.quant_method, "gptq");
}

// AutoAWQ-style synonyms: w_bit -> bits, q_group_size -> group_size.
TEST(QuantizeConfigCompat, WBitAndQGroupSizeSynonyms) {
  const QuantizeConfig c =
      parse_quantize_config(R"({"w_bit": 8, "q_group_size": 64, "desc_act": false, "sym": true})", kSource);
  EXPECT_EQ(c.bits, 8);
  EXPECT_EQ(c.group_size, 64);
}

// A config without checkpoint_format is a v1 ("gptq") checkpoint.
TEST(QuantizeConfigCompat, MissingCheckpointFormatIsGptq) {
  const QuantizeConfig c = parse_quantize_config(R"({"bits": 4, "group_size": 128, "desc_act": false,
      "sym": true, "checkpoint_format": null})",
                                                 kSource);
  EXPECT_EQ(c.checkpoint_format, CheckpointFormat::Gptq);
  EXPECT_TRUE(has_warning(c, "checkpoint_format missing"));
}

// Missing sym: AutoGPTQ warns and assumes symmetric; we do the same and say so.
TEST(QuantizeConfigCompat, MissingSymWarnsAndDefaultsToTrue) {
  const QuantizeConfig c =
      parse_quantize_config(R"({"bits": 4, "group_size": 128, "desc_act": false, "checkpoint_format": "gptq"})",
                            kSource);
  EXPECT_TRUE(c.sym);
  EXPECT_TRUE(has_warning(c, "sym missing: defaulting to true as AutoGPTQ does"));
}

// transformers' newer GPTQConfig names the field `format`.
TEST(QuantizeConfigCompat, FormatAliasOfCheckpointFormat) {
  const QuantizeConfig c =
      parse_quantize_config(R"({"bits": 4, "group_size": 128, "desc_act": false, "sym": true, "format": "gptq_v2"})",
                            kSource);
  EXPECT_EQ(c.checkpoint_format, CheckpointFormat::GptqV2);
}

// GPTQModel lower-cases checkpoint_format and quant_method before comparing.
TEST(QuantizeConfigCompat, FormatAndMethodNamesAreCaseInsensitive) {
  const QuantizeConfig c = parse_quantize_config(R"({"bits": 4, "group_size": 128, "desc_act": false,
      "sym": true, "quant_method": "GPTQ", "checkpoint_format": "GPTQ_V2"})",
                                                 kSource);
  EXPECT_EQ(c.checkpoint_format, CheckpointFormat::GptqV2);
  EXPECT_EQ(c.quant_method, "gptq");
}

// bitsandbytes' llm_int8_skip_modules is transformers' modules_to_not_convert under another name (FORMATS.md 4).
TEST(QuantizeConfigCompat, LlmInt8SkipModulesJoinModulesToNotConvert) {
  const QuantizeConfig c = parse_quantize_config(R"({"bits": 4, "sym": true, "modules_to_not_convert": ["lm_head"],
      "llm_int8_skip_modules": ["lm_head", "mlp.gate"]})",
                                                 kSource);
  EXPECT_EQ(c.modules_to_not_convert, (std::vector<std::string>{"lm_head", "mlp.gate"}));
}

// A re-save through transformers' GPTQConfig can put its default damp_percent at top level next to meta's real one.
TEST(QuantizeConfigCompat, MetaDampPercentWinsOverTopLevel) {
  const QuantizeConfig c = parse_quantize_config(R"({"bits": 4, "sym": true, "damp_percent": 0.1,
      "meta": {"damp_percent": 0.01}})",
                                                 kSource);
  EXPECT_EQ(c.damp_percent, 0.01);
  EXPECT_TRUE(has_warning(c, "damp_percent"));
}

// AutoAWQ's quant_config.json (version "GEMM") is AWQ, not GPTQ: refuse instead of misreading its zero points.
TEST(QuantizeConfigCompat, AwqVersionIsRefused) {
  const std::string msg =
      config_error_of(R"({"w_bit": 4, "q_group_size": 128, "zero_point": true, "version": "GEMM"})");
  EXPECT_TRUE(contains(msg, "version")) << msg;
  EXPECT_TRUE(contains(msg, "AWQ")) << msg;
  EXPECT_TRUE(contains(msg, kSource)) << msg;
}

// Keys that contradict each other are refused: GPTQModel would let whichever comes last in the file win.
TEST(QuantizeConfigCompat, ContradictingKeysAreRefused) {
  std::string msg =
      config_error_of(R"({"bits": 4, "sym": true, "checkpoint_format": "gptq", "is_marlin_format": true})");
  EXPECT_TRUE(contains(msg, "checkpoint_format")) << msg;
  EXPECT_TRUE(contains(msg, "is_marlin_format")) << msg;
  msg = config_error_of(R"({"bits": 4, "w_bit": 8, "sym": true})");
  EXPECT_TRUE(contains(msg, "bits")) << msg;
  EXPECT_TRUE(contains(msg, "w_bit = 8")) << msg;
  msg = config_error_of(R"({"bits": 4, "sym": true, "checkpoint_format": "gptq", "format": "gptq_v2"})");
  EXPECT_TRUE(contains(msg, "format = \"gptq_v2\"")) << msg;
}

// ---------------------------------------------------------------------------------------------------------------
// Validation: every refusal names the key and the file

TEST(QuantizeConfigValidation, EachBadValueNamesKeyAndFile) {
  struct Case {
    const char* json;
    const char* key;      // the key the message must name
    const char* details;  // and this
  };
  const Case cases[] = {
      // AutoGPTQ's bits choices are 2, 3, 4, 8.
      {R"({"bits": 5, "sym": true})", "bits", "2 | 3 | 4 | 8"},
      // A string where a number belongs: a hand-edited config; name the type and the value found.
      {R"({"bits": "4", "sym": true})", "bits", "string \"4\""},
      // 4.0 is not an integer bit width.
      {R"({"bits": 4.0, "sym": true})", "bits", "number 4.0"},
      // group_size must be -1 or positive.
      {R"({"bits": 4, "group_size": 0, "sym": true})", "group_size", "-1 or > 0"},
      {R"({"bits": 4, "group_size": -2, "sym": true})", "group_size", "found -2"},
      // Beyond int: refused, not truncated.
      {R"({"bits": 4, "group_size": 4294967424, "sym": true})", "group_size", "4294967424"},
      // AutoAWQ's gemm and GPTQModel's bitblas/ipex/qqq packings are known but not ours.
      {R"({"bits": 4, "sym": true, "checkpoint_format": "gemm"})", "checkpoint_format", "gptq, gptq_v2, marlin"},
      {R"({"bits": 4, "sym": true, "checkpoint_format": "bitblas"})", "checkpoint_format", "gptq, gptq_v2, marlin"},
      {R"({"bits": 4, "sym": true, "checkpoint_format": "ipex"})", "checkpoint_format", "does not read or write"},
      {R"({"bits": 4, "sym": true, "format": "qqq"})", "format", "gptq, gptq_v2, marlin"},
      // A name nobody uses.
      {R"({"bits": 4, "sym": true, "checkpoint_format": "gptq_v3"})", "checkpoint_format", "unknown"},
      // Other quantization methods in config.json's quantization_config.
      {R"({"bits": 4, "sym": true, "quant_method": "awq"})", "quant_method", "\"awq\""},
      {R"({"bits": 4, "sym": true, "quant_method": "bitsandbytes"})", "quant_method", "\"bitsandbytes\""},
      // damp_percent must satisfy 0 < x < 1, at top level (AutoGPTQ) or in meta (GPTQModel).
      {R"({"bits": 4, "sym": true, "damp_percent": 0})", "damp_percent", "found 0"},
      {R"({"bits": 4, "sym": true, "damp_percent": 1})", "damp_percent", "0 < damp_percent < 1"},
      {R"({"bits": 4, "sym": true, "meta": {"damp_percent": 1.5}})", "damp_percent", "1.5"},
      // GPTQModel: damp_auto_increment must not be negative.
      {R"({"bits": 4, "sym": true, "meta": {"damp_auto_increment": -0.0025}})", "damp_auto_increment", "-0.0025"},
      // Only int32 words are AutoGPTQ-compatible.
      {R"({"bits": 4, "sym": true, "pack_dtype": "int16"})", "pack_dtype", "AutoGPTQ"},
      // Booleans must be booleans.
      {R"({"bits": 4, "sym": true, "desc_act": "false"})", "desc_act", "boolean"},
      {R"({"bits": 4, "sym": 1})", "sym", "number 1"},
      // meta must be an object, quantizer strings.
      {R"({"bits": 4, "sym": true, "meta": "gptqmodel"})", "meta", "string"},
      {R"({"bits": 4, "sym": true, "meta": {"quantizer": 7}})", "meta.quantizer", "number 7"},
      {R"({"bits": 4, "sym": true, "modules_to_not_convert": "lm_head"})", "modules_to_not_convert", "array"},
      // dynamic: an object of rules, each override valid, each pattern a regex std::regex accepts.
      {R"({"bits": 4, "sym": true, "dynamic": [".*"]})", "dynamic", "array"},
      {R"({"bits": 4, "sym": true, "dynamic": {".*down_proj": {"bits": 5}}})", "dynamic", ".bits"},
      {R"({"bits": 4, "sym": true, "dynamic": {".*down_proj": {"group_size": 0}}})", "dynamic", ".group_size"},
      {R"({"bits": 4, "sym": true, "dynamic": {"-:(": {}}})", "dynamic", "regular expression"},
      // Python-only regex syntax would match differently, so it is refused.
      {R"j({"bits": 4, "sym": true, "dynamic": {"(?P<l>.*)": {}}})j", "dynamic", "regular expression"},
      // Patterns std::regex could take exponential time (or too much stack) on: refused with what is wrong.
      {R"({"bits": 4, "sym": true, "dynamic": {"-:.????*\\.mlp": {}}})", "dynamic", "quantifier on a quantifier"},
      {R"({"bits": 4, "sym": true, "dynamic": {"-:(.*)*x": {}}})", "dynamic", "group holding a quantifier"},
      {R"({"bits": 4, "sym": true, "dynamic": {"-:(a|ab)+x": {}}})", "dynamic", "exponential time"},
      {R"({"bits": 4, "sym": true, "dynamic": {"-:.*a.*b.*c.*d": {}}})", "dynamic", "4 repeating of 4 quantifiers"},
      {R"({"bits": 4, "sym": true, "dynamic": {"-:a?b?c?d?e?f?g?h?i?": {}}})", "dynamic", "0 repeating of 9"},
      {R"j({"bits": 4, "sym": true, "dynamic": {"-:((((((((((((((((((((((((((((((((((x))))))))))))))))))))))))))))))))))": {}}})j",
       "dynamic", "34 nested groups"},
      // What libstdc++'s regex parser mishandles (a long back-reference overflows its int: undefined behaviour,
      // fuzz_configs found it): back-references anywhere, and repeat counts of more than 4 digits.
      {R"({"bits": 4, "sym": true, "dynamic": {"-:(a)\\1": {}}})", "dynamic", "back-reference '\\1' at offset 3"},
      {R"({"bits": 4, "sym": true, "dynamic": {"-:.*\\66666666666666.mlp": {}}})", "dynamic", "back-reference"},
      {R"({"bits": 4, "sym": true, "dynamic": {"-:[\\6]x": {}}})", "dynamic", "back-reference"},
      {R"({"bits": 4, "sym": true, "dynamic": {"-:a{123456}": {}}})", "dynamic", "more than 4 digits"},
      {R"({"bits": 4, "sym": true, "dynamic": {"-:a{1,123456}": {}}})", "dynamic", "more than 4 digits"},
      // Unclosed: the parser reads the count before it finds no '}' (fuzz_configs: a 40-digit one overflowed).
      {R"({"bits": 4, "sym": true, "dynamic": {"-:x{77777777777777777777777777,.mlp": {}}})", "dynamic",
       "more than 4 digits at offset 1"},
      // "x" and "+:x" are the same rule: which one wins would depend on key order.
      {R"({"bits": 4, "sym": true, "dynamic": {"x": {"bits": 8}, "+:x": {"bits": 2}}})", "dynamic", "twice"},
  };
  for (const Case& c : cases) {
    const std::string msg = config_error_of(c.json);
    EXPECT_TRUE(contains(msg, "file '" + kSource + "'")) << c.json << "\n" << msg;
    EXPECT_TRUE(contains(msg, c.key)) << c.json << "\n" << msg;
    EXPECT_TRUE(contains(msg, c.details)) << c.json << "\n" << msg;
  }
}

// Text that is not a JSON object is a FormatError naming the source, never an nlohmann exception.
TEST(QuantizeConfigValidation, MalformedJsonIsFormatError) {
  const std::string deep = std::string(200, '[') + std::string(200, ']');
  for (const std::string text : {"", "{", "[]", "null", "4", "{\"bits\": 4,}", "{\"a\": \"\xff\"}", deep.c_str()}) {
    try {
      parse_quantize_config(text, kSource);
      ADD_FAILURE() << "no error for " << text;
    } catch (const FormatError& e) {
      EXPECT_TRUE(contains(e.what(), kSource)) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a FormatError for " << text << ": " << e.what();
    }
  }
}

// Fuzz-style: random bytes and one-byte mutations of a real config either parse or throw qh::Error; what parses
// writes and reads back to the same config.
TEST(QuantizeConfigValidation, MutatedInputNeverEscapesAsAnotherException) {
  const std::string base = quantize_config_json(everything_set());
  int parsed = 0;
  for (std::uint64_t seed = 0; seed < 3000; ++seed) {
    std::string text = base;
    const std::vector<std::byte> r = testing::random_bytes(16, seed);
    if (seed % 10 == 0) {
      text.assign(reinterpret_cast<const char*>(r.data()), r.size());
    } else {
      const std::size_t at =
          (std::to_integer<std::size_t>(r[0]) << 8 | std::to_integer<std::size_t>(r[1])) % text.size();
      text[at] = static_cast<char>(r[2]);
    }
    try {
      QuantizeConfig c = parse_quantize_config(text, kSource);
      ++parsed;
      QuantizeConfig again = parse_quantize_config(quantize_config_json(c), kSource);
      // Writing puts "-:" rules first; the rest of the config must come back unchanged.
      std::stable_partition(c.dynamic.begin(), c.dynamic.end(), [](const DynamicRule& d) { return d.skip; });
      c.checkpoint_format_stated = true;  // the writer always writes checkpoint_format, so the re-read states it
      c.warnings.clear();
      again.warnings.clear();
      EXPECT_EQ(again, c) << text;
    } catch (const Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "non-qh exception " << e.what() << " for\n" << text;
    }
  }
  EXPECT_GT(parsed, 100) << "most single-byte mutations inside strings still parse";
}

// ---------------------------------------------------------------------------------------------------------------
// Writing GPTQModel's layout

// The exact text GPTQModel's save_pretrained (json.dumps(to_dict(), indent=2)) writes for these values.
TEST(QuantizeConfigWrite, DefaultConfigTextIsGptqModelLayout) {
  QuantizeConfig c;
  c.quantizer = {"qharness:0.1.0"};
  c.uri = "https://example.org/qharness";
  EXPECT_EQ(quantize_config_json(c), R"({
  "bits": 4,
  "group_size": 128,
  "desc_act": false,
  "sym": true,
  "lm_head": false,
  "quant_method": "gptq",
  "checkpoint_format": "gptq",
  "pack_dtype": "int32",
  "meta": {
    "quantizer": [
      "qharness:0.1.0"
    ],
    "uri": "https://example.org/qharness",
    "damp_percent": 0.01,
    "damp_auto_increment": 0.0025,
    "static_groups": false,
    "true_sequential": true
  }
}
)");
}

// Key order of GPTQModel's to_dict, dynamic right after bits when present; AutoGPTQ/transformers keys after meta.
TEST(QuantizeConfigWrite, KeyOrderWithDynamic) {
  const ordered_json written = ordered_json::parse(quantize_config_json(everything_set()));
  EXPECT_EQ(keys_of(written),
            (std::vector<std::string>{"bits", "dynamic", "group_size", "desc_act", "sym", "lm_head", "quant_method",
                                      "checkpoint_format", "pack_dtype", "meta", "model_name_or_path",
                                      "model_file_base_name", "modules_to_not_convert", "model_seqlen",
                                      "use_exllama"}));
  EXPECT_EQ(keys_of(written["meta"]),
            (std::vector<std::string>{"quantizer", "uri", "damp_percent", "damp_auto_increment", "static_groups",
                                      "true_sequential", "mse"}));
}

// vLLM walks `dynamic` in file order without GPTQModel's reordering: "-:" rules must be written first to agree.
TEST(QuantizeConfigWrite, SkipRulesAreWrittenFirst) {
  QuantizeConfig c;
  c.dynamic = {DynamicRule{.pattern = ".*", .bits = 8}, DynamicRule{.pattern = ".*lm_head", .skip = true}};
  const ordered_json written = ordered_json::parse(quantize_config_json(c));
  EXPECT_EQ(keys_of(written["dynamic"]), (std::vector<std::string>{"-:.*lm_head", "+:.*"}));
  EXPECT_EQ(written["dynamic"]["-:.*lm_head"], ordered_json::object());
}

// Everything written reads back as it was.
TEST(QuantizeConfigWrite, WriteThenReadIsIdentity) {
  const QuantizeConfig c = everything_set();
  EXPECT_EQ(parse_quantize_config(quantize_config_json(c), kSource), c);
}

// write_quantize_config puts quantize_config.json in the directory, where read_quantize_config finds it.
TEST(QuantizeConfigWrite, FileRoundTrip) {
  testing::TempDir dir;
  QuantizeConfig c = everything_set();
  write_quantize_config(dir.path(), c);
  c.source = dir.file("quantize_config.json");
  EXPECT_EQ(read_quantize_config(dir.path()), c);
}

// The writer refuses what the reader would refuse: no config we write can fail to load.
TEST(QuantizeConfigWrite, InvalidConfigIsNotWritten) {
  QuantizeConfig c;
  c.bits = 5;
  EXPECT_THROW(quantize_config_json(c), ConfigError);
  c = QuantizeConfig{};
  c.pack_dtype = "int8";
  EXPECT_THROW(quantize_config_json(c), ConfigError);
  c = QuantizeConfig{};
  c.dynamic = {DynamicRule{.pattern = "(", .skip = true}};
  EXPECT_THROW(quantize_config_json(c), ConfigError);
  testing::TempDir dir;
  c = QuantizeConfig{};
  c.group_size = 0;
  EXPECT_THROW(write_quantize_config(dir.path(), c), ConfigError);
  EXPECT_FALSE(std::filesystem::exists(dir.file("quantize_config.json")));
}

// config.json gets the same dict as quantization_config (GPTQModel's writer); its own keys keep their order.
TEST(QuantizeConfigWrite, ConfigJsonKeepsBaseKeysAndOrder) {
  const QuantizeConfig c = everything_set();
  const ordered_json expected_dict = ordered_json::parse(quantize_config_json(c));

  ordered_json out = ordered_json::parse(config_json_with_quantization(
      R"({"architectures": ["LlamaForCausalLM"], "torch_dtype": "float16", "hidden_size": 64})", c, "config.json"));
  EXPECT_EQ(keys_of(out), (std::vector<std::string>{"architectures", "torch_dtype", "hidden_size",
                                                    "quantization_config"}));
  EXPECT_EQ(out["quantization_config"], expected_dict);

  // An existing quantization_config is replaced where it stands.
  out = ordered_json::parse(config_json_with_quantization(R"({"a": 1, "quantization_config": {"bits": 8}, "z": 2})",
                                                          c, "config.json"));
  EXPECT_EQ(keys_of(out), (std::vector<std::string>{"a", "quantization_config", "z"}));
  EXPECT_EQ(out["quantization_config"], expected_dict);

  out = ordered_json::parse(config_json_with_quantization("{}", c, "config.json"));
  EXPECT_EQ(out, (ordered_json{{"quantization_config", expected_dict}}));

  try {
    config_json_with_quantization("[1, 2]", c, "base/config.json");
    ADD_FAILURE() << "a base config that is not an object was accepted";
  } catch (const FormatError& e) {
    EXPECT_TRUE(contains(e.what(), "base/config.json")) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// read_quantize_config: lookup order and cross-checks

const char* const kBits4 =
    R"({"bits": 4, "group_size": 128, "desc_act": false, "sym": true, "checkpoint_format": "gptq"})";
const char* const kBits8 =
    R"({"bits": 8, "group_size": 128, "desc_act": false, "sym": true, "checkpoint_format": "gptq"})";

// quantize_config.json comes first in AutoGPTQ's and GPTQModel's lookup order.
TEST(QuantizeConfigLookup, QuantizeConfigJsonBeforeQuantConfigJson) {
  testing::TempDir dir;
  write_file_atomically(dir.file("quantize_config.json"), kBits4);
  write_file_atomically(dir.file("quant_config.json"), kBits8);
  const QuantizeConfig c = read_quantize_config(dir.path());
  EXPECT_EQ(c.bits, 4);
  EXPECT_EQ(c.source, dir.file("quantize_config.json"));
}

// quant_config.json comes before config.json.
TEST(QuantizeConfigLookup, QuantConfigJsonBeforeConfigJson) {
  testing::TempDir dir;
  write_file_atomically(dir.file("quant_config.json"), kBits8);
  write_file_atomically(dir.file("config.json"), R"({"model_type": "llama"})");
  const QuantizeConfig c = read_quantize_config(dir.path());
  EXPECT_EQ(c.bits, 8);
  EXPECT_EQ(c.source, dir.file("quant_config.json"));
}

// No config anywhere: the error names the directory and the three places looked at.
TEST(QuantizeConfigLookup, NothingFoundNamesDirectoryAndPlaces) {
  testing::TempDir dir;
  for (const bool with_config_json : {false, true}) {
    if (with_config_json) write_file_atomically(dir.file("config.json"), R"({"model_type": "llama"})");
    try {
      read_quantize_config(dir.path());
      ADD_FAILURE() << "no error for a directory without a quantization config";
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      for (const char* part : {"quantize_config.json", "quant_config.json", "config.json", "quantization_config"}) {
        EXPECT_TRUE(contains(msg, part)) << msg;
      }
      EXPECT_TRUE(contains(msg, dir.path())) << msg;
      EXPECT_EQ(contains(msg, "config.json without quantization_config"), with_config_json) << msg;
    }
  }
}

// quantize_config.json and config.json disagreeing load differently in GPTQModel and transformers/vLLM: refuse.
TEST(QuantizeConfigLookup, DisagreementNamesBothFilesKeyAndValues) {
  testing::TempDir dir;
  write_file_atomically(dir.file("quantize_config.json"), kBits4);
  write_file_atomically(dir.file("config.json"), std::string(R"({"quantization_config": )") + kBits8 + "}");
  try {
    read_quantize_config(dir.path());
    ADD_FAILURE() << "disagreeing bits were accepted";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(contains(msg, dir.file("quantize_config.json"))) << msg;
    EXPECT_TRUE(contains(msg, dir.file("config.json"))) << msg;
    EXPECT_TRUE(contains(msg, "expected bits 4")) << msg;
    EXPECT_TRUE(contains(msg, "found bits 8")) << msg;
  }
}

// v1 vs v2 zero points is the classic silent mismatch: a gptq_v2 config.json next to a gptq quantize_config.json.
TEST(QuantizeConfigLookup, CheckpointFormatDisagreementIsRefused) {
  testing::TempDir dir;
  write_file_atomically(dir.file("quantize_config.json"), kBits4);
  write_file_atomically(dir.file("config.json"), R"({"quantization_config": {"bits": 4, "group_size": 128,
      "desc_act": false, "sym": true, "checkpoint_format": "gptq_v2"}})");
  try {
    read_quantize_config(dir.path());
    ADD_FAILURE() << "disagreeing checkpoint_format was accepted";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "checkpoint_format gptq_v2")) << e.what();
  }
}

// Only the keys that change how weights load are compared; a different damp_percent is fine.
TEST(QuantizeConfigLookup, AgreeingFilesReadTheStandaloneOne) {
  testing::TempDir dir;
  write_file_atomically(dir.file("quantize_config.json"), kBits4);
  write_file_atomically(dir.file("config.json"), R"({"quantization_config": {"bits": 4, "group_size": 128,
      "desc_act": false, "sym": true, "checkpoint_format": "gptq", "damp_percent": 0.1}})");
  const QuantizeConfig c = read_quantize_config(dir.path());
  EXPECT_EQ(c.source, dir.file("quantize_config.json"));
  EXPECT_EQ(c.damp_percent, 0.01);
}

// ---------------------------------------------------------------------------------------------------------------
// GPTQModel's dynamic rules (gptqmodel/quantization/config.py dynamic_get)

QuantizeConfig with_rules() {
  return parse_quantize_config(R"({"bits": 4, "group_size": 128, "desc_act": true, "sym": true,
      "dynamic": {"-:.*lm_head": {}, ".*mlp\\.down_proj": {"bits": 8, "group_size": 32},
                  "+:model\\.layers\\.1\\.": {"sym": false}}})",
                               kSource);
}

// A "-:" rule leaves the module unquantized; an override rule changes only the keys it names.
TEST(QuantizeConfigDynamic, SkipRuleAndOverrideRule) {
  const QuantizeConfig c = with_rules();
  ASSERT_NE(c.dynamic_rule_for("lm_head"), nullptr);
  EXPECT_TRUE(c.dynamic_rule_for("lm_head")->skip);
  EXPECT_EQ(c.settings_for("lm_head"), std::nullopt);
  EXPECT_EQ(c.settings_for("model.layers.0.mlp.down_proj"),
            (ModuleSettings{.bits = 8, .group_size = 32, .desc_act = true, .sym = true}));
  EXPECT_EQ(c.settings_for("model.layers.1.self_attn.q_proj"),
            (ModuleSettings{.bits = 4, .group_size = 128, .desc_act = true, .sym = false}));
  EXPECT_EQ(c.dynamic_rule_for("model.layers.2.self_attn.q_proj"), nullptr);
  EXPECT_EQ(c.settings_for("model.layers.2.self_attn.q_proj"),
            (ModuleSettings{.bits = 4, .group_size = 128, .desc_act = true, .sym = true}));
}

// re.match semantics: anchored at the start of the name, not at the end (not fullmatch, not search).
TEST(QuantizeConfigDynamic, PatternsMatchAtTheStartOnly) {
  QuantizeConfig c;
  c.dynamic = {DynamicRule{.pattern = "down_proj", .bits = 8}};
  EXPECT_EQ(c.dynamic_rule_for("model.layers.0.mlp.down_proj"), nullptr) << "re.match does not search";
  c.dynamic = {DynamicRule{.pattern = R"(model\.layers\.1)", .bits = 8}};
  EXPECT_NE(c.dynamic_rule_for("model.layers.1.mlp.down_proj"), nullptr) << "a prefix is enough";
  EXPECT_NE(c.dynamic_rule_for("model.layers.10.mlp.down_proj"), nullptr) << "so layers.1 also catches layers.10";
  EXPECT_EQ(with_rules().dynamic_rule_for("model.layers.10.mlp.gate_proj"), nullptr) << "unless ended with \\.";
}

// What the backtracking limits leave allowed: lazy quantifiers, quantifier characters inside a class or escaped,
// alternation in an unquantified group, a quantified group without a choice inside, {n}.
TEST(QuantizeConfigDynamic, SafePatternsAreAccepted) {
  for (const char* pattern : {R"(.*?v_proj)", R"(.??odel)", R"([*+?]*model)", R"(model\.layers\.(1[0-5]|0)\..*)",
                              R"(\*?(mo)+del)", R"(m{1}o{0,1}del.*)", R"(m{0,9999}odel)"}) {
    QuantizeConfig c;
    c.dynamic = {DynamicRule{.pattern = pattern, .bits = 8}};
    EXPECT_NO_THROW(validate_quantize_config(c, kSource)) << pattern;
    EXPECT_NE(c.dynamic_rule_for("model.layers.0.self_attn.v_proj"), nullptr) << pattern;
  }
}

// GPTQModel's __post_init__ moves "-:" rules ahead of the others: a skip wins over an earlier matching override.
TEST(QuantizeConfigDynamic, SkipRulesWinOverEarlierOverrides) {
  const QuantizeConfig c = parse_quantize_config(
      R"({"bits": 4, "sym": true, "dynamic": {".*": {"bits": 8}, "-:.*lm_head": {}}})", kSource);
  EXPECT_EQ(c.settings_for("lm_head"), std::nullopt);
  EXPECT_EQ(c.settings_for("model.layers.0.mlp.up_proj")->bits, 8);
}

// A config that does not name its checkpoint_format says so (checkpoint_format_stated false), so the loader can let
// the stored zero points decide; any key that names it (checkpoint_format, format, is_marlin_format) states it.
TEST(QuantizeConfigCompat, UnstatedCheckpointFormatIsRecorded) {
  EXPECT_FALSE(parse_quantize_config(R"({"bits": 4, "group_size": 128, "sym": true, "desc_act": false})", kSource)
                   .checkpoint_format_stated);
  EXPECT_TRUE(parse_quantize_config(R"({"bits": 4, "group_size": 128, "sym": true, "desc_act": false,
                                        "checkpoint_format": "gptq"})", kSource).checkpoint_format_stated);
  EXPECT_TRUE(parse_quantize_config(R"({"bits": 4, "group_size": 128, "sym": true, "desc_act": false,
                                        "format": "gptq_v2"})", kSource).checkpoint_format_stated);
}

}  // namespace
}  // namespace qh::format

namespace qh::format {
namespace {

// Inputs fuzz_configs once failed on (fixtures/malformed/fuzz_configs/, selector byte 0 = a quantize config), under
// the fuzz target's properties: a refusal names the file; what the reader accepts, the writer writes and the reader
// reads back as the same config, and its dynamic rules match a module name (a pattern that hung std::regex).
TEST(QuantizeConfigFuzzRegressions, AcceptedConfigsRoundTrip) {
  const std::string dir = std::string(QH_SOURCE_DIR) + "/fixtures/malformed/fuzz_configs";
  int replayed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string input = testing::read_text(entry.path().string());
    ASSERT_FALSE(input.empty());
    if (input[0] % 3 != 0) continue;
    QuantizeConfig c;
    try {
      c = parse_quantize_config(std::string_view(input).substr(1), entry.path().string());
    } catch (const ConfigError& e) {  // the fuzz property: a refusal names the file
      EXPECT_NE(std::string(e.what()).find(entry.path().string()), std::string::npos) << e.what();
      ++replayed;
      continue;
    }
    EXPECT_TRUE(survives_round_trip(c)) << entry.path() << " changed in the round trip:\n" << quantize_config_json(c);
    c.settings_for("model.layers.0.self_attn.q_proj");  // a pattern must match in bounded time
    ++replayed;
  }
  EXPECT_GT(replayed, 0) << "no quantize-config regression inputs in " << dir;
}

}  // namespace
}  // namespace qh::format
