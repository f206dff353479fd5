// A generator of pathological Hessians for the GPTQ stress suite (hessian_stress_test.cpp): the shapes real
// calibration produces when it goes wrong (too few tokens, dead inputs, duplicated features, activations spanning
// 1e-15..1e15, fp16 accumulation, Hessians from a buggy caller with negative eigenvalues, NaN/Inf, all zero, extreme
// overall scale). Case `index` of a seed is always the same matrix, so a CI subset is a prefix of the full run and
// any failing case can be replayed alone.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "impl/gptq/config.h"

namespace qh::testing {

enum class Pathology {
  RankDeficient,       // fewer calibration tokens than columns
  DeadColumns,         // inputs no token reached (zero rows/columns; column 0 often: the order-1 minor)
  DuplicatedColumns,   // identical input features (exactly singular)
  HugeDynamicRange,    // column scales 1e-15..1e15: entries 1e-30..1e30
  Fp16Accumulated,     // H rounded to fp16 at a random magnitude: negative eigenvalues, underflow, overflow to Inf
  NegativeEigenvalue,  // H - f mean(diag) I, f in [0, 2): recoverable by damping below the cap or not
  ExtremeScale,        // a healthy H times 1e-30..1e40 (above float32's range at the top)
  NonFinite,           // NaN or +-Inf entries: must be refused
  AllZero,             // no calibration data reached the layer: must be refused
};
inline constexpr int kPathologies = 9;

const char* to_string(Pathology p);

struct HessianCase {
  std::uint64_t index = 0;
  Pathology kind = Pathology::RankDeficient;
  at::Tensor h;       // (K, K) as handed to GPTQ: float64 or float32, as a caller accumulated it
  // The positive semi-definite H the case came from, float64, to measure the error on. Undefined where there is none
  // (NonFinite, AllZero) and for Fp16Accumulated: fp16 destroyed information GPTQ never saw, so its error is
  // measured in the damped H it factorized (hessian_stress_test.cpp).
  at::Tensor h_true;
  at::Tensor weight;  // (N, K) float32
  std::int64_t calib_tokens = -1;
  gptq::GptqConfig config;
  bool must_refuse = false;  // NonFinite, AllZero: a NumericError is the only right outcome
  std::string detail;        // the random parameters, for failure messages

  std::string describe() const;  // "case 17 (NegativeEigenvalue, K=96, N=5, 4 bits, group 32, ...)"
};

// Case `index` of `seed`. K is log-uniform in [1, 512] for 95 % of the cases and in [512, max_k] for the rest (the
// pathologies are structural; a few large cases exercise blocking and grouping at scale).
HessianCase pathological_hessian(std::uint64_t seed, std::uint64_t index, std::int64_t max_k);

}  // namespace qh::testing
