#include "impl/checkpoint/verify_marlin.h"

#include <ATen/ATen.h>

#include <cstdio>

#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/core/errors.h"
#include "impl/core/shape_text.h"
#include "impl/marlin/layout.h"
#include "impl/marlin/marlin_linear.h"

namespace qh::checkpoint {

namespace {

std::string num(std::int64_t v) { return std::to_string(v); }
std::string dims(const at::Tensor& t) { return shape_text(t.sizes()); }
std::string range(std::int64_t from, std::int64_t to) { return num(from) + ".." + num(to - 1); }
std::string decimal(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

// [row, column] of the first true entry of a 2-D mask, as text.
std::string first_at(const at::Tensor& mask) {
  const at::Tensor at = mask.nonzero()[0];
  return "[" + num(at[0].item<std::int64_t>()) + ", " + num(at[1].item<std::int64_t>()) + "]";
}

class MarlinLayerCheck {
 public:
  MarlinLayerCheck(const std::string& layer, const QuantizedLayout& layout, const TensorIndex& tensors,
                   const TensorIndex& base, std::vector<Finding>& findings)
      : layer_(layer), layout_(layout), tensors_(tensors), base_(base), findings_(findings) {}

  MarlinExtents run() {
    e_ = extents();
    if (!has("s")) {
      find("tensors", "missing tensor " + name("s"));
      return e_;
    }
    const at::Tensor b = load("B");
    if (b.scalar_type() != at::kInt || b.dim() != 2) {
      find("tensors", name("B") + " is " + dims(b) + " " + c10::toString(b.scalar_type()) +
                          ": Marlin's B is a 2-D int32 tensor (K'/16, 2N')");
      return e_;
    }
    const std::int64_t k = e_.k.value_or(b.size(0) * 16), n = e_.n.value_or(b.size(1) / 2);
    const auto spec = layout_.spec_for(layer_, k, n);
    if (!spec) {
      find("config", "quantized in the file but a dynamic \"-:\" rule leaves it unquantized");
      return e_;
    }
    if (!config_fits(*spec)) return e_;
    const marlin::MarlinSpec m = marlin::marlin_spec_of(*spec);
    try {
      m.validate(layer_);
    } catch (const Error& err) {
      find("tensors", err.what());
      return e_;
    }
    if (!b_shape_fits(b, m)) return e_;
    const at::Tensor s = load("s");
    if (!s_shape_fits(s, m)) return e_;
    check_scales(s, m);
    check_perm(m);
    check_padded_codes(b, m);
    if (has("weight")) find("tensors", "both a full-precision weight and Marlin's B are stored");
    return e_;
  }

 private:
  std::string name(const char* part) const { return layer_ + "." + part; }
  bool has(const char* part) const { return tensors_.count(name(part)) != 0; }
  at::Tensor load(const char* part) const {
    const auto& [file, info] = tensors_.at(name(part));
    return load_tensor(file, *info, c10::kCPU);
  }
  void find(const char* check, const std::string& message) { findings_.push_back({layer_, check, message}); }

  MarlinExtents extents() const {
    MarlinExtents e;
    if (const auto w = base_.find(name("weight")); w != base_.end() && w->second.second->shape.size() == 2) {
      const auto& shape = w->second.second->shape;
      e.n = std::int64_t(shape[0]), e.k = std::int64_t(shape[1]);
      e.k_from = e.n_from = "the base model";
      return e;
    }
    if (const auto p = tensors_.find(name("perm")); p != tensors_.end() && p->second.second->shape.size() == 1) {
      e.k = std::int64_t(p->second.second->shape[0]), e.k_from = "perm's length";
    }
    if (const auto b = tensors_.find(name("bias")); b != tensors_.end() && b->second.second->shape.size() == 1) {
      e.n = std::int64_t(b->second.second->shape[0]), e.n_from = "bias's length";
    }
    return e;
  }

  // "K = 96 (the base model)", or for an extent nothing states, the padded one B implies.
  std::string extent_text(const char* what, std::int64_t value, const std::optional<std::int64_t>& known,
                          const std::string& from, const char* implied) const {
    return std::string(what) + " = " + num(value) +
           (known ? " (" + from + ")" : std::string(" (") + implied + "; the unpadded " + what + " needs --base)");
  }

  // What the config says must be what Marlin's format can hold (convert refuses the rest).
  bool config_fits(const quant_linear::QuantSpec& spec) {
    const std::size_t before = findings_.size();
    if (spec.bits != 4) {
      find("config", "config says " + num(spec.bits) + " bits but Marlin's B holds 4-bit codes");
    }
    if (!spec.sym) {
      find("config", "config says sym: false but Marlin's GPTQ path is symmetric (no zero points are stored)");
    }
    if (!marlin::marlin_spec_of(spec).group_size_supported()) {
      find("config", "config's group_size = " + num(spec.group_size) +
                         " is not one Marlin supports (-1, 32, 64, 128, or K = " + num(spec.in_features) + " or more)");
    }
    return findings_.size() == before;
  }

  bool b_shape_fits(const at::Tensor& b, const marlin::MarlinSpec& m) {
    const std::vector<std::int64_t> expected{m.k_padded() / 16, 2 * m.n_padded()};
    if (b.sizes().vec() == expected) return true;
    const std::string group = m.group_size == -1 ? "one scale row" : "group_size " + num(m.group_size);
    find("tensors", name("B") + " is " + dims(b) + " but " +
                        extent_text("K", m.in_features, e_.k, e_.k_from, "B's rows x 16") + ", " +
                        extent_text("N", m.out_features, e_.n, e_.n_from, "B's columns / 2") + " with " + group +
                        " pad to K' = " + num(m.k_padded()) + ", N' = " + num(m.n_padded()) +
                        ": expected (K'/16, 2N') = " + shape_text(expected));
    return false;
  }

  bool s_shape_fits(const at::Tensor& s, const marlin::MarlinSpec& m) {
    bool fits = true;
    if (s.scalar_type() != at::kHalf && s.scalar_type() != at::kBFloat16) {
      find("scales", name("s") + " is " + c10::toString(s.scalar_type()) +
                         ": Marlin's GEMM takes float16 or bfloat16 scales");
      fits = false;
    }
    const std::vector<std::int64_t> expected{m.groups(), m.n_padded()};
    if (s.sizes().vec() != expected) {
      find("tensors", name("s") + " is " + dims(s) + " but " + num(m.groups()) + " scale rows (" +
                          (m.group_size == -1 ? "one group" : "K over group_size " + num(m.group_size)) +
                          ") of N' = " + num(m.n_padded()) + " columns are expected: " + shape_text(expected));
      fits = false;
    }
    return fits;
  }

  // Finite everywhere; in output order (unpermuted), positive in the N real columns and 0 in the padded ones.
  void check_scales(const at::Tensor& stored, const marlin::MarlinSpec& m) {
    const at::Tensor s = marlin::unpermute_scales(stored, m.group_size != -1, layer_).to(at::kFloat);
    if (const auto bad = (~s.isfinite()).sum().item<std::int64_t>(); bad > 0) {
      find("scales", name("s") + " must be finite: " + num(bad) + " values are not, the first at " +
                         first_at(~s.isfinite()) + " (in output order)");
      return;
    }
    const std::int64_t n = e_.n.value_or(m.n_padded()), np = m.n_padded();
    const at::Tensor real = s.narrow(1, 0, n);
    // Without N the padded columns cannot be told apart: then only negative scales are certain damage.
    const at::Tensor nonpositive = e_.n ? real <= 0 : real < 0;
    if (const auto bad = nonpositive.sum().item<std::int64_t>(); bad > 0) {
      find("scales", name("s") + ": " + num(bad) + " scales of the " + num(n) + " real columns are " +
                         (e_.n ? "zero or negative" : "negative") + ", the first at " + first_at(nonpositive) +
                         " (in output order)");
    }
    if (!e_.n || n == np) return;
    const at::Tensor padded = s.narrow(1, n, np - n) != 0;
    if (const auto bad = padded.sum().item<std::int64_t>(); bad > 0) {
      const at::Tensor at = padded.nonzero()[0];
      const std::int64_t row = at[0].item<std::int64_t>(), col = n + at[1].item<std::int64_t>();
      find("padding", "padded columns " + range(n, np) + " of " + name("s") + " must be 0 (N = " + num(n) +
                          " padded to N' = " + num(np) + "): " + num(bad) + " are not, the first s[" + num(row) +
                          ", " + num(col) + "] = " + decimal(s[row][col].item<double>()) +
                          " (in output order)");
    }
  }

  // perm (K,) int32 exactly when the config has desc_act, holding each of 0..K-1 once.
  void check_perm(const marlin::MarlinSpec& m) {
    if (has("perm") != m.act_order) {
      find("tensors", m.act_order ? "missing tensor " + name("perm") + " (desc_act: true: B's rows are in act order)"
                                  : name("perm") + " is stored but desc_act is false");
      return;
    }
    if (!m.act_order) return;
    const at::Tensor perm = load("perm");
    const std::int64_t k = m.in_features;
    if (perm.scalar_type() != at::kInt || perm.sizes().vec() != std::vector<std::int64_t>{k}) {
      find("tensors", name("perm") + " is " + dims(perm) + " " + c10::toString(perm.scalar_type()) +
                          " but K = " + num(k) + " (" + e_.k_from + ") needs [" + num(k) + "] int32");
      return;
    }
    const at::Tensor p = perm.to(at::kLong);
    if (const auto outside = ((p < 0) | (p >= k)).sum().item<std::int64_t>(); outside > 0) {
      find("perm", name("perm") + " is not a permutation of 0.." + num(k - 1) + ": " + num(outside) +
                       " entries are outside it");
      return;
    }
    const at::Tensor counts = at::bincount(p, {}, k);
    if ((counts == 1).all().item<bool>()) return;
    const std::int64_t twice = (counts > 1).nonzero()[0][0].item<std::int64_t>();
    const std::int64_t never = (counts == 0).nonzero()[0][0].item<std::int64_t>();
    find("perm", name("perm") + " is not a permutation of 0.." + num(k - 1) + ": " + num(twice) + " appears " +
                     num(counts[twice].item<std::int64_t>()) + " times and " + num(never) + " never");
  }

  // Padded rows K..K'-1 and columns N..N'-1 of B hold code 8 (weight 0; word 0x88888888).
  void check_padded_codes(const at::Tensor& b, const marlin::MarlinSpec& m) {
    const std::int64_t kp = m.k_padded(), np = m.n_padded();
    const std::int64_t k = e_.k.value_or(kp), n = e_.n.value_or(np);
    if (k == kp && n == np) return;
    const at::Tensor codes = marlin::unpack_weights(b, kp, np, layer_);
    if (k < kp) padded_codes(codes.narrow(0, k, kp - k), k, 0, "rows " + range(k, kp), "K", k, kp);
    // Columns over the real rows only: the corner is the rows' finding.
    if (n < np) {
      padded_codes(codes.narrow(0, 0, k).narrow(1, n, np - n), 0, n, "columns " + range(n, np), "N", n, np);
    }
  }

  // `region` starts at [row0, col0] of B's codes.
  void padded_codes(const at::Tensor& region, std::int64_t row0, std::int64_t col0, const std::string& where,
                    const char* extent, std::int64_t real, std::int64_t padded) {
    const at::Tensor bad = region != 8;
    const auto count = bad.sum().item<std::int64_t>();
    if (count == 0) return;
    const at::Tensor at = bad.nonzero()[0];
    const std::int64_t row = at[0].item<std::int64_t>(), col = at[1].item<std::int64_t>();
    find("padding", "padded " + where + " of " + name("B") + " must hold code 8 (weight 0, words 0x88888888; " +
                        extent + " = " + num(real) + " padded to " + num(padded) + "): " + num(count) +
                        " codes differ, the first at [" + num(row0 + row) + ", " + num(col0 + col) + "] = " +
                        num(region[row][col].item<std::int64_t>()));
  }

  const std::string& layer_;
  const QuantizedLayout& layout_;
  const TensorIndex& tensors_;
  const TensorIndex& base_;
  std::vector<Finding>& findings_;
  MarlinExtents e_;
};

}  // namespace

bool is_marlin_b(const TensorIndex& tensors, const std::string& name) {
  const auto it = tensors.find(name);
  if (it == tensors.end()) return false;
  return it->second.second->dtype == format::Dtype::I32 ||
         tensors.count(name.substr(0, name.size() - 2) + ".s") != 0;
}

MarlinExtents check_marlin_layer(const std::string& layer, const QuantizedLayout& layout, const TensorIndex& tensors,
                                 const TensorIndex& base, std::vector<Finding>& findings) {
  return MarlinLayerCheck(layer, layout, tensors, base, findings).run();
}

}  // namespace qh::checkpoint
