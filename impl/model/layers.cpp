#include "impl/model/layers.h"

#include <ATen/ATen.h>

namespace qh::model {

Linear::Linear(std::int64_t in_features, std::int64_t out_features, bool bias, const at::TensorOptions& options)
    : Module("Linear"), in_(in_features), out_(out_features) {
  register_parameter("weight", at::empty({out_features, in_features}, options));
  if (bias) register_parameter("bias", at::empty({out_features}, options));
}

at::Tensor Linear::forward(const at::Tensor& x) const {
  const at::Tensor& w = tensor("weight");
  const auto b = slot("bias");
  return at::linear(x.to(w.scalar_type()), w, b ? std::optional<at::Tensor>(b->value) : std::nullopt);
}

Embedding::Embedding(std::int64_t vocab, std::int64_t dim, const at::TensorOptions& options, std::string kind)
    : Module(std::move(kind)) {
  register_parameter("weight", at::empty({vocab, dim}, options));
}

at::Tensor Embedding::forward(const at::Tensor& tokens) const { return at::embedding(tensor("weight"), tokens); }

RMSNorm::RMSNorm(std::int64_t dim, const at::TensorOptions& options, double eps) : Module("RMSNorm"), eps_(eps) {
  register_parameter("weight", at::empty({dim}, options));
}

at::Tensor RMSNorm::forward(const at::Tensor& x) const {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps_);
  return (normed * tensor("weight").to(at::kFloat)).to(x.scalar_type());
}

}  // namespace qh::model
