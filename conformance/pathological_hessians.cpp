#include "conformance/pathological_hessians.h"

#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "conformance/gptq_case.h"

namespace qh::testing {

namespace {

// Activations (tokens, k): Gaussian with a low-rank shared component, so columns are correlated like real features.
// The cost is tokens x k x 16, cheap even at k = 4096 (a dense k x k mix would cost k^3).
at::Tensor activations(std::int64_t tokens, std::int64_t k, at::Generator& gen) {
  const std::int64_t r = std::min<std::int64_t>(k, 16);
  const at::Tensor shared = at::randn({tokens, r}, gen, at::kDouble).matmul(at::randn({r, k}, gen, at::kDouble));
  return at::randn({tokens, k}, gen, at::kDouble) + shared / std::sqrt(double(r));
}

// GPTQ's H = 2/n X^T X over the n tokens (gptq_case.h's hessian_of is the unnormalized sum).
at::Tensor mean_hessian_of(const at::Tensor& x) {
  return hessian_of(x) / double(std::max<std::int64_t>(x.size(0), 1));
}

// A full-rank calibration: twice as many tokens as columns, capped so building H stays under ~2e9 flops.
std::int64_t healthy_tokens(std::int64_t k) {
  return std::max<std::int64_t>(1, std::min<std::int64_t>(2 * k, 2'000'000'000 / std::max<std::int64_t>(k * k, 1)));
}

class Draw {
 public:
  explicit Draw(std::uint64_t seed) : rng_(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
  std::int64_t integer(std::int64_t lo, std::int64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng_);
  }
  bool coin(double p = 0.5) { return uniform(0, 1) < p; }
  std::int64_t log_uniform(std::int64_t lo, std::int64_t hi) {
    return std::min(hi, std::int64_t(std::exp(uniform(std::log(double(lo)), std::log(double(hi) + 1)))));
  }
  std::uint64_t bits() { return rng_(); }

 private:
  std::mt19937_64 rng_;
};

gptq::GptqConfig random_config(Draw& d, std::int64_t k) {
  gptq::GptqConfig c;
  const int bits[] = {2, 3, 4, 8};
  c.bits = bits[d.integer(0, 3)];
  std::vector<int> groups = {-1};
  for (int g : {32, 64, 128}) {
    if (k % g == 0) groups.push_back(g);
  }
  c.group_size = groups[std::size_t(d.integer(0, std::int64_t(groups.size()) - 1))];
  c.sym = d.coin();
  c.desc_act = d.coin();
  c.static_groups = c.group_size != -1 && d.coin(0.3);
  c.float64 = d.coin();
  return c;
}

}  // namespace

const char* to_string(Pathology p) {
  switch (p) {
    case Pathology::RankDeficient: return "RankDeficient";
    case Pathology::DeadColumns: return "DeadColumns";
    case Pathology::DuplicatedColumns: return "DuplicatedColumns";
    case Pathology::HugeDynamicRange: return "HugeDynamicRange";
    case Pathology::Fp16Accumulated: return "Fp16Accumulated";
    case Pathology::NegativeEigenvalue: return "NegativeEigenvalue";
    case Pathology::ExtremeScale: return "ExtremeScale";
    case Pathology::NonFinite: return "NonFinite";
    case Pathology::AllZero: return "AllZero";
  }
  return "?";
}

std::string HessianCase::describe() const {
  std::ostringstream s;
  s << "case " << index << " (" << to_string(kind) << ", K=" << h.size(0) << ", N=" << weight.size(0) << ", H "
    << (h.scalar_type() == at::kDouble ? "float64" : "float32") << ", " << config.bits << " bits, group "
    << config.group_size << (config.sym ? ", sym" : ", asym") << (config.desc_act ? ", act-order" : "")
    << (config.static_groups ? ", static groups" : "") << (config.float64 ? ", float64" : ", float32") << "; "
    << detail << ")";
  return s.str();
}

HessianCase pathological_hessian(std::uint64_t seed, std::uint64_t index, std::int64_t max_k) {
  Draw d(seed * 0x9E3779B97F4A7C15ull + index);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(d.bits());
  HessianCase c;
  c.index = index;
  c.kind = Pathology(index % kPathologies);
  const std::int64_t k = d.coin(0.95) || max_k <= 512 ? d.log_uniform(1, std::min<std::int64_t>(512, max_k))
                                                      : d.log_uniform(512, max_k);
  c.config = random_config(d, k);
  std::ostringstream detail;
  std::int64_t tokens = healthy_tokens(k);
  at::Tensor x;
  switch (c.kind) {
    case Pathology::RankDeficient:
      tokens = k > 1 ? d.integer(1, k - 1) : 1;
      x = activations(tokens, k, gen);
      c.h_true = mean_hessian_of(x);
      c.h = c.h_true;
      c.calib_tokens = tokens;
      detail << tokens << " tokens";
      break;
    case Pathology::DeadColumns: {
      x = activations(tokens, k, gen);
      const at::Tensor dead = at::rand({k}, gen, at::kDouble) < d.uniform(0, 1);
      if (d.coin()) dead[0] = true;  // the seed failure: "the leading minor of order 1"
      x.index_put_({at::indexing::Slice(), dead}, 0.0);
      c.h_true = mean_hessian_of(x);
      c.h = c.h_true;
      detail << dead.sum().item<std::int64_t>() << " dead columns";
      break;
    }
    case Pathology::DuplicatedColumns: {
      x = activations(tokens, k, gen);
      const std::int64_t copies = d.integer(1, k);
      const at::Tensor from = at::randint(k, {copies}, gen, at::kLong), to = at::randint(k, {copies}, gen, at::kLong);
      x.index_copy_(1, to, x.index_select(1, from));
      c.h_true = mean_hessian_of(x);
      c.h = c.h_true;
      detail << copies << " columns copied";
      break;
    }
    case Pathology::HugeDynamicRange: {
      const double span = d.uniform(1, 15);
      x = activations(tokens, k, gen) * at::pow(10.0, (at::rand({k}, gen, at::kDouble) * 2 - 1) * span);
      c.h_true = mean_hessian_of(x);
      c.h = c.h_true;
      detail << "column scales 1e-" << span << "..1e" << span;
      break;
    }
    case Pathology::Fp16Accumulated: {
      tokens = d.integer(1, healthy_tokens(k));
      const double magnitude = std::pow(10.0, d.uniform(-8, 6));
      x = activations(tokens, k, gen) * magnitude;
      c.h = mean_hessian_of(x).to(at::kHalf).to(at::kFloat);  // beyond 65504 is Inf, below 6e-8 is 0
      c.calib_tokens = tokens;
      detail << tokens << " tokens, activations x " << magnitude;
      break;
    }
    case Pathology::NegativeEigenvalue: {
      x = activations(tokens, k, gen);
      c.h_true = mean_hessian_of(x);
      const double f = d.uniform(0, 2);
      c.h = c.h_true - f * c.h_true.diagonal().mean().item<double>() * at::eye(k, at::kDouble);
      detail << "H - " << f << " mean(diag) I";
      break;
    }
    case Pathology::ExtremeScale: {
      const double scale = std::pow(10.0, d.uniform(-30, 40));
      x = activations(tokens, k, gen);
      c.h_true = mean_hessian_of(x) * scale;
      c.h = c.h_true;
      detail << "H x " << scale;
      break;
    }
    case Pathology::NonFinite: {
      x = activations(tokens, k, gen);
      c.h = mean_hessian_of(x);
      const double bad[] = {std::nan(""), std::numeric_limits<double>::infinity(),
                            -std::numeric_limits<double>::infinity()};
      const std::int64_t count = d.integer(1, std::min<std::int64_t>(k * k, 8));
      for (std::int64_t i = 0; i < count; ++i) c.h[d.integer(0, k - 1)][d.integer(0, k - 1)] = bad[d.integer(0, 2)];
      c.must_refuse = true;
      detail << count << " entries set to NaN/Inf";
      break;
    }
    case Pathology::AllZero:
      c.h = at::zeros({k, k}, at::kDouble);
      c.calib_tokens = 0;
      c.must_refuse = true;
      detail << "no tokens";
      break;
  }
  if (d.coin(0.5) && c.h.scalar_type() == at::kDouble) c.h = c.h.to(at::kFloat);  // accumulated in float32
  const std::int64_t n = d.integer(1, 32);
  c.weight = (at::randn({n, k}, gen, at::kDouble) * std::pow(10.0, d.uniform(-3, 3))).to(at::kFloat);
  if (n > 1 && d.coin(0.2)) c.weight[0].zero_();  // an all-zero output row
  c.detail = detail.str();
  return c;
}

}  // namespace qh::testing
