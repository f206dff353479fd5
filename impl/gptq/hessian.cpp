#include "impl/gptq/hessian.h"

#include <ATen/ATen.h>

#include <cmath>

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"

namespace qh::gptq {

HessianAccumulator::HessianAccumulator(std::int64_t columns, std::string layer, at::ScalarType dtype,
                                       c10::Device device)
    : layer_(std::move(layer)) {
  if (dtype != at::kFloat && dtype != at::kDouble) {
    throw ConfigError(Where{.layer = layer_}, "the Hessian accumulates in float32 or float64", "float or double",
                      c10::toString(dtype));
  }
  h_ = at::zeros({columns, columns}, at::TensorOptions().dtype(dtype).device(device));
}

void HessianAccumulator::add_batch(const at::Tensor& inputs) {
  const std::int64_t k = h_.size(0);
  if (inputs.dim() < 2 || inputs.size(-1) != k) {
    throw ShapeError(Where{.layer = layer_}, "calibration activations must end in in_features",
                     "shape (tokens, " + std::to_string(k) + ") or (batch, ..., " + std::to_string(k) + ")",
                     "shape " + shape_text(inputs.sizes()));
  }
  const auto type = inputs.scalar_type();
  if (type != at::kHalf && type != at::kBFloat16 && type != at::kFloat && type != at::kDouble) {
    throw ConfigError(Where{.layer = layer_}, "calibration activations must be floating point",
                      "float16, bfloat16, float32 or float64", c10::toString(type));
  }
  const at::Tensor x = inputs.reshape({-1, k}).to(h_.device(), h_.scalar_type());
  if (x.size(0) == 0) return;
  if (!at::isfinite(x).all().item<bool>()) {
    throw NumericError(Where{.layer = layer_}, "calibration activations hold NaN or Inf", "finite values",
                       std::to_string((~at::isfinite(x)).sum().item<std::int64_t>()) + " non-finite values");
  }
  const std::int64_t batch = inputs.dim() == 2 ? 1 : inputs.size(0);
  h_.mul_(double(samples_) / double(samples_ + batch));
  samples_ += batch;
  tokens_ += x.size(0);
  const at::Tensor scaled = x * std::sqrt(2.0 / double(samples_));
  h_.addmm_(scaled.t(), scaled);
}

const at::Tensor& HessianAccumulator::hessian() const {
  if (tokens_ == 0) {
    throw ConfigError(Where{.layer = layer_}, "the calibration set is empty", "at least one token", "none");
  }
  return h_;
}

}  // namespace qh::gptq
