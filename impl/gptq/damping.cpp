#include "impl/gptq/damping.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
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

// One damped factorization. U, the upper Cholesky factor of (H + damp I)^-1, is J inv(chol(J Hd J)) J with J the
// reversal permutation: if J Hd J = L L^T then Hd^-1 = (J L^-1 J)^T (J L^-1 J), and J L^-1 J is upper triangular.
// One Cholesky and one triangular solve instead of the published cholesky -> cholesky_inverse -> cholesky (about
// half the flops; same U up to rounding). `failed_order`: order k of the failing leading minor of J Hd J, i.e. the
// principal minor over the last k columns of H (processing order).
bool try_factor(const at::Tensor& h, double damp, Factorization& out, std::int64_t& failed_order) {
  at::Tensor flipped = h.flip({0, 1});
  flipped.diagonal().add_(damp);
  auto [lower, info] = at::linalg_cholesky_ex(flipped);
  failed_order = info.item<std::int64_t>();
  if (failed_order != 0) return false;
  // LAPACK's potrf only stops at a pivot <= 0 or NaN: an Inf pivot from an overflowed sum passes as success.
  if (!at::isfinite(lower.diagonal()).all().item<bool>()) {
    failed_order = -1;
    return false;
  }
  const at::Tensor upper = at::linalg_solve_triangular(lower, at::eye(h.size(0), h.options()), /*upper=*/false)
                               .flip({0, 1});
  // A near-singular H can leave the inverse non-finite in float32 (AutoGPTQ #138 failed at the equivalent step), or
  // its pivots zero: both would divide by zero in the column loop.
  if (!at::isfinite(upper).all().item<bool>() || !(upper.diagonal() > 0).all().item<bool>()) {
    failed_order = -1;
    return false;
  }
  out.hinv_upper = upper;
  out.min_pivot = lower.diagonal().min().item<double>();
  return true;
}

std::string minor_text(std::int64_t failed_order) {
  if (failed_order < 0) return "its factor or inverse is not finite or has a zero pivot";
  return "the principal minor over its last " + std::to_string(failed_order) +
         " columns in processing order is not positive-definite";
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
  // The schedule is percdamp + i * increment for i = 0..last, every value below the cap (GPTQModel's linear scan).
  // H + d I positive-definite implies H + d' I positive-definite for d' > d (the eigenvalues only move up), so the
  // first value that factorizes is found by galloping up the schedule and bisecting: the scan's answer in
  // O(log n) factorizations instead of up to n (396 at the defaults, each a K^3/3 Cholesky: minutes at K = 4096 on a
  // CPU for a Hessian no damp can fix). Where rounding makes success non-monotone right at the boundary the search
  // may stop a step from the scan's value; it is a value that factorized either way.
  std::int64_t last = 0;
  if (policy.increment > 0) {
    // (capped: an increment of 1e-300 must not overflow the index; 1e15 steps are beyond double's resolution anyway)
    last = std::int64_t(std::min(1e15, std::ceil((policy.cap - policy.percdamp) / policy.increment)));
    while (last > 0 && policy.percdamp + double(last) * policy.increment >= policy.cap) --last;
  }
  const auto percdamp_at = [&](std::int64_t i) { return policy.percdamp + double(i) * policy.increment; };
  Factorization out;
  out.h_scale = h.diagonal().to(at::kDouble).mean().item<double>();
  if (!(out.h_scale > 0)) {
    // damp = percdamp * mean(diag) would be <= 0: no damp of this policy can make H positive-definite.
    throw NumericError(Where{.layer = ctx.layer}, "the Hessian's mean diagonal is not positive, so it is not X^T X",
                       "mean(diag(H)) > 0", "mean(diag(H)) = " + fmt(out.h_scale));
  }
  std::int64_t failed_minor = 0;
  double percdamp = policy.percdamp;
  const bool can_retry_f64 = policy.float64_retry && !policy.strict && working != at::kDouble;
  for (int pass = 0; pass < (can_retry_f64 ? 2 : 1); ++pass) {
    const at::Tensor work = (h.to(at::kDouble) / out.h_scale).to(pass == 0 ? working : at::kDouble);
    const double mean_diag = work.diagonal().mean().item<double>();  // 1 up to rounding
    const auto factorizes = [&](std::int64_t i) {
      ++out.attempts;
      percdamp = percdamp_at(i);
      return try_factor(work, percdamp * mean_diag, out, failed_minor);
    };
    if (!factorizes(0)) {
      if (policy.strict) {
        throw NumericError(Where{.layer = ctx.layer},
                           "strict damping: the damped Hessian is not positive-definite (" + minor_text(failed_minor) +
                               ")",
                           "a factorization at damp_percent " + fmt(percdamp), "failure" + advice(h, ctx));
      }
      std::int64_t fails = 0, works = -1;  // indices known to fail / to factorize
      for (std::int64_t step = 1; works < 0 && fails < last; step *= 2) {
        const std::int64_t i = std::min(fails + step, last);
        (factorizes(i) ? works : fails) = i;
      }
      if (works < 0) continue;  // even the last value below the cap fails
      while (works - fails > 1) {
        const std::int64_t mid = fails + (works - fails) / 2;
        (factorizes(mid) ? works : fails) = mid;
      }
      percdamp = percdamp_at(works);  // `out` holds its factorization: try_factor writes only on success
    }
    out.percdamp = percdamp;
    out.float64_retry = pass == 1;
    out.min_pivot *= std::sqrt(out.h_scale);  // the pivots of H's own Cholesky factor
    return out;
  }
  throw NumericError(Where{.layer = ctx.layer},
                     "the damped Hessian could not be factorized (" + minor_text(failed_minor) + ") after " +
                         std::to_string(out.attempts) + " attempts" + (can_retry_f64 ? " in float32 and float64" : ""),
                     "a factorization with damp_percent < " + fmt(policy.cap),
                     "last damp_percent " + fmt(percdamp) + advice(h, ctx));
}

}  // namespace qh::gptq
