#include "impl/gptq/damping.h"

#include <ATen/ATen.h>

#include <sstream>

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"

namespace qh::gptq {

namespace {

std::string fmt(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// One damped factorization; `failed_minor` is the order of the leading minor that was not positive-definite.
bool try_factor(const at::Tensor& h, double damp, Factorization& out, std::int64_t& failed_minor) {
  at::Tensor damped = h.clone();
  damped.diagonal().add_(damp);
  auto [lower, info] = at::linalg_cholesky_ex(damped);
  failed_minor = info.item<std::int64_t>();
  if (failed_minor != 0) return false;
  const at::Tensor inverse = at::cholesky_inverse(lower);
  auto [upper, info_upper] = at::linalg_cholesky_ex(inverse, /*upper=*/true);
  failed_minor = info_upper.item<std::int64_t>();
  // The inverse can lose definiteness to rounding when H is near-singular (AutoGPTQ #138 failed here).
  if (failed_minor != 0 || !at::isfinite(upper).all().item<bool>()) {
    if (failed_minor == 0) failed_minor = -1;
    return false;
  }
  out.hinv_upper = upper;
  out.min_pivot = lower.diagonal().min().item<double>();
  return true;
}

std::string advice(const at::Tensor& h, const HessianContext& ctx) {
  std::string text;
  const std::int64_t columns = h.size(0);
  if (ctx.calib_tokens >= 0 && ctx.calib_tokens < columns) {
    text += "; only " + std::to_string(ctx.calib_tokens) + " calibration tokens for " + std::to_string(columns) +
            " columns, so H has rank <= " + std::to_string(ctx.calib_tokens) +
            ": use more calibration samples or longer sequences";
  }
  if (ctx.dead_columns > 0) text += "; " + std::to_string(ctx.dead_columns) + " dead columns (zero diagonal)";
  return text + "; or raise damp_percent / damp_auto_increment";
}

}  // namespace

void check_hessian_usable(const at::Tensor& h, const HessianContext& ctx) {
  if (h.dim() != 2 || h.size(0) != h.size(1)) {
    throw ShapeError(Where{.layer = ctx.layer}, "the Hessian must be square", "shape (K, K)",
                     "shape " + shape_text(h.sizes()));
  }
  const std::int64_t bad = (~at::isfinite(h)).sum().item<std::int64_t>();
  if (bad > 0) {
    throw NumericError(Where{.layer = ctx.layer}, "the Hessian holds NaN or Inf (check the calibration activations)",
                       "finite values", std::to_string(bad) + " non-finite entries");
  }
  if (!h.ne(0).any().item<bool>()) {
    throw NumericError(Where{.layer = ctx.layer},
                       "the Hessian is all zero: no calibration data reached this layer",
                       "a Hessian from at least one non-zero activation", "all " + std::to_string(h.numel()) +
                                                                              " entries zero");
  }
}

Factorization factor_inverse_hessian(const at::Tensor& h, at::ScalarType working, const DampingPolicy& policy,
                                     const HessianContext& ctx) {
  if (!(policy.percdamp > 0 && policy.percdamp < policy.cap) || policy.increment < 0) {
    throw ConfigError(Where{.layer = ctx.layer}, "damp_percent must lie in (0, cap) and the increment be >= 0",
                      "0 < damp_percent < " + fmt(policy.cap), "damp_percent " + fmt(policy.percdamp) +
                                                                    ", increment " + fmt(policy.increment));
  }
  check_hessian_usable(h, ctx);
  Factorization out;
  std::int64_t failed_minor = 0;
  double percdamp = policy.percdamp;
  const bool can_retry_f64 = policy.float64_retry && !policy.strict && working != at::kDouble;
  for (int pass = 0; pass < (can_retry_f64 ? 2 : 1); ++pass) {
    const at::Tensor work = h.to(pass == 0 ? working : at::kDouble);
    const double mean_diag = work.diagonal().mean().item<double>();
    percdamp = policy.percdamp;
    while (true) {
      ++out.attempts;
      if (try_factor(work, percdamp * mean_diag, out, failed_minor)) {
        out.percdamp = percdamp;
        out.float64_retry = pass == 1;
        return out;
      }
      if (policy.strict) {
        throw NumericError(Where{.layer = ctx.layer},
                           "strict damping: the damped Hessian is not positive-definite (leading minor of order " +
                               std::to_string(failed_minor) + ")",
                           "a factorization at damp_percent " + fmt(percdamp), "failure" + advice(h, ctx));
      }
      if (policy.increment <= 0 || percdamp + policy.increment >= policy.cap) break;
      percdamp += policy.increment;
    }
  }
  const std::string minor = failed_minor > 0 ? "leading minor of order " + std::to_string(failed_minor) +
                                                   " not positive-definite"
                                             : "inverse not positive-definite";
  throw NumericError(Where{.layer = ctx.layer},
                     "the damped Hessian could not be factorized (" + minor + ") after " +
                         std::to_string(out.attempts) + " attempts" + (can_retry_f64 ? " in float32 and float64" : ""),
                     "a factorization with damp_percent < " + fmt(policy.cap),
                     "last damp_percent " + fmt(percdamp) + advice(h, ctx));
}

}  // namespace qh::gptq
