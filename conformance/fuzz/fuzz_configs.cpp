// libFuzzer target: the torch-free JSON config readers (impl/format/quantize_config.cpp, model_config.cpp). The
// first input byte picks the reader, the rest is the file's text:
//   0: quantize_config.json / quant_config.json / a quantization_config dict (parse_quantize_config)
//   1: config.json's model half (parse_model_config)
//   2: config.json rewritten with a quantization_config (config_json_with_quantization, as convert/quantize do)
// Beyond fuzz_checks.h's properties: what a reader accepts, our writer writes and the reader reads back unchanged,
// and GPTQModel's `dynamic` rules of an accepted config can be applied to a module name without failing.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "conformance/fuzz/fuzz_checks.h"
#include "conformance/quantize_config_round_trip.h"
#include "impl/format/model_config.h"
#include "impl/format/quantize_config.h"

namespace {

using namespace qh;
using format::QuantizeConfig;

void quantize_config(std::string_view text) {
  const std::string source = "fuzz-input/quantize_config.json";
  QuantizeConfig c;
  try {
    c = format::parse_quantize_config(text, source);
  } catch (const Error& e) {
    return fuzz::require_names(e, source);
  }
  fuzz::require(format::survives_round_trip(c),
                "quantize_config changed in the write/read round trip; written:\n" + format::quantize_config_json(c));
  try {
    c.settings_for("model.layers.0.self_attn.q_proj");
  } catch (const ConfigError& e) {
    fuzz::require_names(e, source);  // a dynamic pattern std::regex refuses
  }
}

void model_config(std::string_view text) {
  const std::string source = "fuzz-input/config.json";
  format::ModelConfig c;
  try {
    c = format::parse_model_config(text, source);
  } catch (const Error& e) {
    return fuzz::require_names(e, source);
  }
  const std::string written = format::model_config_json(c);
  fuzz::require(format::model_config_json(format::parse_model_config(written, "round-trip")) == written,
                "config.json changed in the write/read round trip; written:\n" + written);
}

void config_with_quantization(std::string_view text) {
  const std::string source = "fuzz-input/base/config.json";
  try {
    format::config_json_with_quantization(text, QuantizeConfig{}, source);
  } catch (const Error& e) {
    fuzz::require_names(e, source);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: quantize_config(text); break;
    case 1: model_config(text); break;
    default: config_with_quantization(text); break;
  }
  return 0;
}
