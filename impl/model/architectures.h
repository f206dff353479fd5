// Two synthetic architectures for fixtures, with the module and tensor names of the real ones so that skip rules,
// tied weights and checkpoint keys behave as they do on real checkpoints:
//  - llama-like (transformers LlamaForCausalLM names): model.embed_tokens, model.layers.N.self_attn.{q,k,v,o}_proj,
//    model.layers.N.mlp.{gate,up,down}_proj (optional biases), RMSNorms, lm_head (optionally tied);
//  - hyena-like (StripedHyena names, FORMATS.md section 4): backbone.embedding_layer and backbone.unembed
//    (VocabParallelEmbedding, tied through `tie_embeddings`), backbone.blocks.N.{projections, out_filter_dense},
//    backbone.blocks.N.filter.{poles, residues, D} (float32 modal filter parameters), backbone.blocks.N.mlp.{l1,l2,l3}.
// The forwards are small but real (causal attention, a modal long convolution), so a changed weight shows.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "impl/format/model_config.h"
#include "impl/model/module.h"

namespace qh::model {

struct Model {
  format::ModelConfig config;
  std::unique_ptr<Module> root;
  // Tied tensors as (alias, source) qualified names: the alias shares the source's slot and is not stored in
  // checkpoints (safetensors refuses shared tensors).
  std::vector<std::pair<std::string, std::string>> ties;
  std::string output_head;             // module producing the logits ("lm_head", "backbone.unembed")
  std::set<std::string> keep_float32;  // tensor local names the architecture keeps in float32 (hyena poles, ...)

  // tokens: int64 (batch, seq) -> logits float32 (batch, seq, vocab).
  at::Tensor forward(const at::Tensor& tokens) const;
};

c10::ScalarType scalar_type_of(const format::ModelConfig& config);  // "float16" -> kHalf, ...

// The architecture of `config`, every tensor created with `device` (meta: no memory) in the config's dtype
// (keep_float32 tensors in float32). Values are uninitialized; see init_random.
Model build_model(const format::ModelConfig& config, c10::Device device);
// Seeded random values for every tensor (weights ~ N(0, 1/in), norms ~ 1, stable filter poles).
void init_random(Model& model, std::uint64_t seed);

// Small configs for tests and the built-in fixtures.
format::ModelConfig tiny_llama_config(bool attention_bias, bool mlp_bias, bool tied);
format::ModelConfig tiny_hyena_config();

}  // namespace qh::model
