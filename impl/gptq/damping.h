// Factorizing the damped Hessian into the upper Cholesky factor of its inverse, with recovery when H is not
// positive-definite (seed failure: "linalg.cholesky: ... the leading minor of order 1 is not positive-definite" on
// Qwen2-7B layers, AutoGPTQ #708). Escalation follows GPTQModel's damp_auto_increment (FORMATS.md 2.4) in its v4
// form: mean(diag(H)) is taken once from the undamped H and every attempt damps a fresh copy (v1-v3 damped H in
// place, so their damping compounded across retries). The first damp of that schedule that factorizes is found by
// galloping search rather than a linear scan: the same value in O(log n) factorizations (damping.cpp says why).
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace qh::gptq {

struct DampingPolicy {
  double percdamp = 0.01;    // damp = percdamp * mean(diag(H)); must be in (0, cap)
  double increment = 0.0025; // added to percdamp after a failed factorization; 0 = no escalation
  double cap = 1.0;          // escalation stops before percdamp reaches this
  bool float64_retry = true; // after float32 attempts are exhausted, run them again in float64
  bool strict = false;       // any failure of the first attempt is an error (no escalation, no retry)
};

// What the caller knows about the layer, for diagnostics.
struct HessianContext {
  std::string layer;
  std::int64_t calib_tokens = -1;  // -1 = unknown
  std::int64_t dead_columns = 0;
};

struct Factorization {
  // U, upper triangular, U^T U = (H / h_scale + damp I)^-1, in the working dtype (or float64 after a retry). H is
  // divided by its mean diagonal first: GPTQ's Q does not depend on H's scale (U scales by 1/sqrt(c), the errors by
  // sqrt(c)), and a float32 Cholesky of an H near float32's range overflowed into a "successful" factorization with
  // zero pivots of U, then NaN weights (hessian_stress_test, H x 4e37). Losses computed with U are in units of H /
  // h_scale: multiply them by h_scale.
  at::Tensor hinv_upper;
  double h_scale = 1;     // mean(diag(H)), > 0
  double percdamp = 0;    // the one that worked
  int attempts = 0;
  bool float64_retry = false;
  double min_pivot = 0;   // smallest diagonal entry of the Cholesky factor of the damped H (in H's own units)
};

// `h` must have passed check_hessian_usable (prepare_layer checks it before setting dead columns to 1 on the
// diagonal, which would hide an all-zero H; a second pass over K^2 entries here would be wasted). Attempts run in
// `working` precision; the float64 retry starts again from `h` itself, so keep `h` in the precision it was
// accumulated in (a float64 H rounded to float32 first may already have lost its definiteness). Throws
// NumericError naming the layer, the last percdamp tried, the minor that failed and what to change
// (calibration tokens vs columns, dead columns, damp) when no attempt succeeds, or at the first failure in strict
// mode.
Factorization factor_inverse_hessian(const at::Tensor& h, at::ScalarType working, const DampingPolicy& policy,
                                     const HessianContext& ctx);

// Refuses a Hessian with NaN/Inf or no information (all zero) with a NumericError naming the layer.
void check_hessian_usable(const at::Tensor& h, const HessianContext& ctx);

}  // namespace qh::gptq
