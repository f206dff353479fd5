// The write/read round trip of a quantize config, shared by fuzz_configs and QuantizeConfigFuzzRegressions: what
// parse_quantize_config accepts, quantize_config_json writes and parse_quantize_config reads back unchanged.
#pragma once

#include "impl/format/quantize_config.h"

namespace qh::format {

inline bool survives_round_trip(const QuantizeConfig& c) {
  QuantizeConfig back = parse_quantize_config(quantize_config_json(c), "round trip");
  // What the writer cannot carry: where the text came from, the reader's notes, and whether checkpoint_format was
  // stated (the writer always states it).
  back.source = c.source;
  back.warnings = c.warnings;
  back.checkpoint_format_stated = c.checkpoint_format_stated;
  return back == c;
}

}  // namespace qh::format
