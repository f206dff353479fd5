// The plain layers of the synthetic architectures: Linear (y = x W^T + b, torch.nn.Linear's layout: weight
// (out_features, in_features)), Embedding (a lookup table) and RMSNorm. Built with any TensorOptions, `meta`
// included, in which case they hold no memory until the loader materializes them.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "impl/model/module.h"

namespace qh::model {

class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const override;  // x is cast to the weight's dtype first
  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }
  bool has_bias() const { return slot("bias") != nullptr; }

 private:
  std::int64_t in_, out_;
};

class Embedding : public Module {
 public:
  // `kind` lets an architecture name its own embedding class (StripedHyena's VocabParallelEmbedding).
  Embedding(std::int64_t vocab, std::int64_t dim, const at::TensorOptions& options, std::string kind = "Embedding");
  at::Tensor forward(const at::Tensor& tokens) const override;  // int64 ids -> (..., dim)
};

class RMSNorm : public Module {
 public:
  RMSNorm(std::int64_t dim, const at::TensorOptions& options, double eps = 1e-6);
  at::Tensor forward(const at::Tensor& x) const override;  // computed in float32, returned in x's dtype

 private:
  double eps_;
};

}  // namespace qh::model
