// GPTQ settings and the per-layer summary, shared by the reference (CPU) and optimized (CUDA) paths.
#pragma once

#include <cstdint>
#include <string>

#include "impl/gptq/damping.h"

namespace qh::gptq {

struct GptqConfig {
  int bits = 4;                // 2, 3, 4 or 8
  int group_size = 128;        // -1: one group per row (per-channel); else must divide in_features
  bool sym = true;
  bool desc_act = false;       // act-order: columns in descending diag(H) order
  bool static_groups = false;  // group grids from the unpermuted columns, before the loop (FORMATS.md 2.2 step 4)
  int block_size = 128;        // lazy-batch block of the column loop
  bool float64 = false;        // working precision of the reference: float64, or float32 like the published GPTQ
  DampingPolicy damping;

  int maxq() const { return (1 << bits) - 1; }
  // Throws ConfigError naming `layer` when a field is outside what is supported for `in_features` columns.
  void validate(std::int64_t in_features, const std::string& layer) const;
};

// What happened to one layer; goes to results.json `layers`.
struct LayerSummary {
  std::string name;
  int bits = 0;
  int group_size = 0;
  bool desc_act = false;
  double damp_initial = 0;  // percdamp asked for
  double damp_final = 0;    // percdamp that factorized
  int attempts = 0;         // factorizations tried (1 = no escalation)
  bool float64_retry = false;
  std::int64_t dead_columns = 0;
  std::int64_t calib_tokens = -1;  // -1 when the caller gave a Hessian, not activations
  double min_pivot = 0;            // smallest diagonal of the Cholesky factor of the damped H
  double loss = 0;                 // sum over columns of (w - q)^2 / d^2 / 2 (IST-DASLab's reported 'error')
  double seconds = 0;
};

}  // namespace qh::gptq
