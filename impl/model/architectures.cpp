#include "impl/model/architectures.h"

#include <ATen/ATen.h>

#include <cmath>

#include "impl/core/errors.h"
#include "impl/model/layers.h"

namespace qh::model {

namespace {

std::unique_ptr<Module> container(const char* kind) { return std::make_unique<Module>(kind); }

// A float32 tensor a forward can trust: the module at `path` below `root`, which must exist.
const Module& at_path(const Module& root, const std::string& path) {
  const Module* m = &root;
  std::size_t start = 0;
  while (start < path.size()) {
    const std::size_t dot = path.find('.', start);
    const std::size_t end = dot == std::string::npos ? path.size() : dot;
    const Module* next = m->child(path.substr(start, end - start));
    if (next == nullptr) {
      throw ConfigError(Where{.layer = path}, "the forward needs every module of the architecture",
                        "a module at this path", "none");
    }
    m = next;
    start = end + 1;
  }
  return *m;
}

at::Tensor run(const Module& root, const std::string& path, const at::Tensor& x) {
  return at_path(root, path).forward(x).to(at::kFloat);
}

Model build_llama(const format::ModelConfig& c, const at::TensorOptions& o) {
  Model m;
  m.config = c;
  m.root = container("LlamaForCausalLM");
  Module& model = m.root->register_module("model", container("LlamaModel"));
  model.register_module("embed_tokens", std::make_unique<Embedding>(c.vocab_size, c.hidden_size, o));
  Module& layers = model.register_module("layers", container("ModuleList"));
  for (std::int64_t i = 0; i < c.num_layers; ++i) {
    Module& layer = layers.register_module(std::to_string(i), container("LlamaDecoderLayer"));
    Module& attn = layer.register_module("self_attn", container("LlamaAttention"));
    for (const char* name : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
      attn.register_module(name, std::make_unique<Linear>(c.hidden_size, c.hidden_size, c.attention_bias, o));
    }
    Module& mlp = layer.register_module("mlp", container("LlamaMLP"));
    for (const char* name : {"gate_proj", "up_proj"}) {
      mlp.register_module(name, std::make_unique<Linear>(c.hidden_size, c.intermediate_size, c.mlp_bias, o));
    }
    mlp.register_module("down_proj", std::make_unique<Linear>(c.intermediate_size, c.hidden_size, c.mlp_bias, o));
    layer.register_module("input_layernorm", std::make_unique<RMSNorm>(c.hidden_size, o));
    layer.register_module("post_attention_layernorm", std::make_unique<RMSNorm>(c.hidden_size, o));
  }
  model.register_module("norm", std::make_unique<RMSNorm>(c.hidden_size, o));
  Module& head = m.root->register_module("lm_head", std::make_unique<Linear>(c.hidden_size, c.vocab_size, false, o));
  m.output_head = "lm_head";
  if (c.tied) {
    head.share_slot("weight", model.child("embed_tokens")->slot("weight"));
    m.ties.emplace_back("lm_head.weight", "model.embed_tokens.weight");
  }
  return m;
}

// StripedHyena's modal filter (ParallelHyenaFilter): per channel, `state` complex poles p and residues r give the
// long causal kernel k[t] = sum_s Re(r_s p_s^t); D is the skip term. Kept in float32 like the original.
class HyenaFilter : public Module {
 public:
  HyenaFilter(std::int64_t dim, std::int64_t state, const at::TensorOptions& o) : Module("ParallelHyenaFilter") {
    const auto f32 = o.dtype(at::kFloat);
    register_parameter("poles", at::empty({dim, state, 2}, f32));
    register_parameter("residues", at::empty({dim, state, 2}, f32));
    register_parameter("D", at::empty({dim}, f32));
  }

  // u: (batch, seq, dim) float32.
  at::Tensor forward(const at::Tensor& u) const override {
    const at::Tensor& p = tensor("poles");
    const at::Tensor& r = tensor("residues");
    at::Tensor re = r.select(-1, 0), im = r.select(-1, 1);
    const at::Tensor pre = p.select(-1, 0), pim = p.select(-1, 1);
    at::Tensor y = u * tensor("D");
    const std::int64_t seq = u.size(1);
    for (std::int64_t t = 0; t < seq; ++t) {
      const at::Tensor k = re.sum(-1);  // (dim,): Re(sum_s r_s p_s^t)
      y.narrow(1, t, seq - t).add_(u.narrow(1, 0, seq - t) * k);
      const at::Tensor next_re = re * pre - im * pim;
      im = re * pim + im * pre;
      re = next_re;
    }
    return y;
  }
};

Model build_hyena(const format::ModelConfig& c, const at::TensorOptions& o) {
  Model m;
  m.config = c;
  m.keep_float32 = {"poles", "residues", "D"};
  m.root = container("StripedHyenaModelForCausalLM");
  Module& backbone = m.root->register_module("backbone", container("StripedHyena"));
  Module& embed = backbone.register_module(
      "embedding_layer", std::make_unique<Embedding>(c.vocab_size, c.hidden_size, o, "VocabParallelEmbedding"));
  Module& blocks = backbone.register_module("blocks", container("ModuleList"));
  for (std::int64_t i = 0; i < c.num_layers; ++i) {
    Module& block = blocks.register_module(std::to_string(i), container("ParallelGatedConvBlock"));
    block.register_module("pre_norm", std::make_unique<RMSNorm>(c.hidden_size, o));
    block.register_module("post_norm", std::make_unique<RMSNorm>(c.hidden_size, o));
    block.register_module("projections", std::make_unique<Linear>(c.hidden_size, 3 * c.hidden_size, true, o));
    block.register_module("filter", std::make_unique<HyenaFilter>(c.hidden_size, c.state_size, o));
    block.register_module("out_filter_dense", std::make_unique<Linear>(c.hidden_size, c.hidden_size, true, o));
    Module& mlp = block.register_module("mlp", container("ParallelGatedMLP"));
    mlp.register_module("l1", std::make_unique<Linear>(c.hidden_size, c.intermediate_size, false, o));
    mlp.register_module("l2", std::make_unique<Linear>(c.hidden_size, c.intermediate_size, false, o));
    mlp.register_module("l3", std::make_unique<Linear>(c.intermediate_size, c.hidden_size, false, o));
  }
  backbone.register_module("norm", std::make_unique<RMSNorm>(c.hidden_size, o));
  Module& unembed = backbone.register_module(
      "unembed", std::make_unique<Embedding>(c.vocab_size, c.hidden_size, o, "VocabParallelEmbedding"));
  m.output_head = "backbone.unembed";
  if (c.tied) {
    unembed.share_slot("weight", embed.slot("weight"));
    m.ties.emplace_back("backbone.unembed.weight", "backbone.embedding_layer.weight");
  }
  return m;
}

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const std::int64_t seq = q.size(1);
  at::Tensor scores = q.matmul(k.transpose(1, 2)) / std::sqrt(double(q.size(-1)));
  const at::Tensor future = at::ones({seq, seq}, q.options().dtype(at::kBool)).triu(1);
  return scores.masked_fill(future, -INFINITY).softmax(-1).matmul(v);
}

at::Tensor forward_llama(const Model& m, const at::Tensor& tokens) {
  const Module& root = *m.root;
  at::Tensor h = run(root, "model.embed_tokens", tokens);
  for (std::int64_t i = 0; i < m.config.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const at::Tensor a = run(root, p + "input_layernorm", h);
    const at::Tensor attn = causal_attention(run(root, p + "self_attn.q_proj", a), run(root, p + "self_attn.k_proj", a),
                                             run(root, p + "self_attn.v_proj", a));
    h = h + run(root, p + "self_attn.o_proj", attn);
    const at::Tensor x = run(root, p + "post_attention_layernorm", h);
    h = h + run(root, p + "mlp.down_proj", at::silu(run(root, p + "mlp.gate_proj", x)) * run(root, p + "mlp.up_proj", x));
  }
  return run(root, "lm_head", run(root, "model.norm", h));
}

at::Tensor forward_hyena(const Model& m, const at::Tensor& tokens) {
  const Module& root = *m.root;
  at::Tensor h = run(root, "backbone.embedding_layer", tokens);
  for (std::int64_t i = 0; i < m.config.num_layers; ++i) {
    const std::string p = "backbone.blocks." + std::to_string(i) + ".";
    const auto parts = run(root, p + "projections", run(root, p + "pre_norm", h)).chunk(3, -1);
    const at::Tensor y = parts[0] * run(root, p + "filter", parts[1] * parts[2]);
    h = h + run(root, p + "out_filter_dense", y);
    const at::Tensor x = run(root, p + "post_norm", h);
    h = h + run(root, p + "mlp.l3", at::silu(run(root, p + "mlp.l1", x)) * run(root, p + "mlp.l2", x));
  }
  // StripedHyena's unembed: logits = h @ E^T with the (tied) embedding table.
  const at::Tensor& table = at_path(root, "backbone.unembed").tensor("weight");
  return run(root, "backbone.norm", h).matmul(table.to(at::kFloat).t());
}

}  // namespace

at::Tensor Model::forward(const at::Tensor& tokens) const {
  return config.model_type == "stripedhyena" ? forward_hyena(*this, tokens) : forward_llama(*this, tokens);
}

c10::ScalarType scalar_type_of(const format::ModelConfig& config) {
  if (config.dtype == "bfloat16") return at::kBFloat16;
  if (config.dtype == "float32") return at::kFloat;
  return at::kHalf;
}

Model build_model(const format::ModelConfig& config, c10::Device device) {
  const auto options = at::TensorOptions().dtype(scalar_type_of(config)).device(device);
  return config.model_type == "stripedhyena" ? build_hyena(config, options) : build_llama(config, options);
}

void init_random(Model& model, std::uint64_t seed) {
  at::manual_seed(seed);
  std::set<const TensorSlot*> done;  // a tied slot is initialized once
  for (const NamedTensor& t : named_tensors(*model.root)) {
    if (!done.insert(t.slot.get()).second) continue;
    at::Tensor& v = t.slot->value;
    const auto cpu = at::TensorOptions().dtype(at::kFloat);
    at::Tensor value;
    if (t.local == "poles") {
      // |p| in (0.5, 0.95): a decaying, oscillating kernel.
      const at::Tensor radius = at::rand(v.sizes().slice(0, 2), cpu) * 0.45 + 0.5;
      const at::Tensor angle = at::rand(v.sizes().slice(0, 2), cpu) * M_PI;
      value = at::stack({radius * at::cos(angle), radius * at::sin(angle)}, -1);
    } else if (v.dim() == 1 && t.local == "weight") {
      value = 1.0 + 0.1 * at::randn(v.sizes(), cpu);  // norms
    } else if (v.dim() == 1) {
      value = 0.1 * at::randn(v.sizes(), cpu);  // biases, D: nonzero so a lost bias shows
    } else {
      value = at::randn(v.sizes(), cpu) / std::sqrt(double(v.size(-1)));
    }
    v = value.to(v.options());
  }
}

format::ModelConfig tiny_llama_config(bool attention_bias, bool mlp_bias, bool tied) {
  format::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 96;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_layers = 2;
  c.attention_bias = attention_bias;
  c.mlp_bias = mlp_bias;
  c.tied = tied;
  c.tie_key = "tie_word_embeddings";
  return c;
}

format::ModelConfig tiny_hyena_config() {
  format::ModelConfig c;
  c.model_type = "stripedhyena";
  c.vocab_size = 64;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_layers = 2;
  c.state_size = 4;
  c.tied = true;
  c.tie_key = "tie_embeddings";
  return c;
}

}  // namespace qh::model
