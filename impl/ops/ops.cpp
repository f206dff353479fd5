#include "impl/ops/ops.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "impl/core/errors.h"
#include "impl/gptq/reference.h"
#include "impl/marlin/gemm.h"
#include "impl/marlin/repack.h"
#include "impl/quant_linear/dequantize.h"
#include "impl/quant_linear/packing.h"

namespace qh::ops {

namespace {

// "qharness.<Kind>: <message>" as the c10 error Python maps to the builtin the kind belongs with.
[[noreturn]] void rethrow(const qh::Error& e) {
  const auto kind = [&]() -> const char* {
    if (dynamic_cast<const ShapeError*>(&e)) return "ShapeError";
    if (dynamic_cast<const ConfigError*>(&e)) return "ConfigError";
    if (dynamic_cast<const FormatError*>(&e)) return "FormatError";
    if (dynamic_cast<const NumericError*>(&e)) return "NumericError";
    if (dynamic_cast<const IoError*>(&e)) return "IoError";
    return "Error";
  }();
  const std::string message = std::string("qharness.") + kind + ": " + e.what();
  const c10::SourceLocation where{__func__, __FILE__, static_cast<std::uint32_t>(__LINE__)};
  if (dynamic_cast<const ShapeError*>(&e) || dynamic_cast<const ConfigError*>(&e) ||
      dynamic_cast<const FormatError*>(&e)) {
    throw c10::ValueError(where, message);
  }
  throw c10::Error(where, message);
}

template <class F>
auto translated(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const qh::Error& e) {
    rethrow(e);
  }
}

std::string name_or(const std::string& layer, const char* op) { return layer.empty() ? op : layer; }

quant_linear::ZeroFormat zero_format(const std::string& format, const std::string& layer) {
  if (format == "gptq") return quant_linear::ZeroFormat::V1;
  if (format == "gptq_v2") return quant_linear::ZeroFormat::V2;
  throw ConfigError(Where{.layer = layer}, "format is a GPTQ checkpoint_format", "gptq (v1) or gptq_v2",
                    "'" + format + "'");
}

// qweight (K * bits / 32, N): K from the packed rows.
quant_linear::QuantSpec spec_of_qweight(const at::Tensor& qweight, std::int64_t bits, std::int64_t group_size,
                                        bool desc_act, const std::string& format, const std::string& layer) {
  if (qweight.dim() != 2) {
    throw ShapeError(Where{.tensor = layer + ".qweight"}, "qweight is a matrix (K * bits / 32, N)", "2 dimensions",
                     std::to_string(qweight.dim()));
  }
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    throw ConfigError(Where{.layer = layer}, "GPTQ packs 2, 3, 4 or 8 bits", "2, 3, 4 or 8", std::to_string(bits));
  }
  quant_linear::QuantSpec spec;
  spec.in_features = qweight.size(0) * 32 / bits;
  spec.out_features = qweight.size(1);
  spec.bits = int(bits);
  spec.group_size = int(group_size);
  spec.desc_act = desc_act;
  spec.sym = false;  // the ops take any zero points; a config's sym: true is the checkpoint verifier's to check
  spec.zero_format = zero_format(format, layer);
  return spec;
}

// pack/unpack run the library's CPU code (the bit layout is a host-side format step); CUDA tensors go through it
// and come back to their device.
at::Tensor on(const at::Tensor& t, const at::Tensor& like) { return t.to(like.device()); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gptq_quantize(
    const at::Tensor& weight, const at::Tensor& hessian, std::int64_t bits, std::int64_t group_size, bool sym,
    bool desc_act, bool static_groups, double damp_percent, double damp_auto_increment, bool float64,
    const std::string& layer) {
  return translated([&] {
    const std::string name = name_or(layer, "gptq_quantize");
    gptq::GptqConfig config;
    config.bits = int(bits);
    config.group_size = int(group_size);
    config.sym = sym;
    config.desc_act = desc_act;
    config.static_groups = static_groups;
    config.float64 = float64;
    config.damping.percdamp = damp_percent;
    config.damping.increment = damp_auto_increment;
    gptq::GptqResult r;
    if (weight.is_cuda()) {
      if (float64) {
        throw ConfigError(Where{.layer = name}, "the optimized (CUDA) GPTQ works in float32",
                          "float64=False on a CUDA device (or CPU tensors for the float64 reference)", "float64=True");
      }
      r = gptq::gptq_optimized(weight, hessian, config, name, -1, weight.device());
    } else {
      r = gptq::gptq_reference(weight, hessian, config, name);
    }
    const auto& s = r.summary;
    const at::Tensor summary =
        at::tensor({s.damp_initial, s.damp_final, double(s.attempts), s.float64_retry ? 1.0 : 0.0,
                    double(s.dead_columns), s.min_pivot, s.loss}, at::kDouble).to(weight.device());
    const at::ScalarType working = float64 ? at::kDouble : at::kFloat;
    return std::make_tuple(r.codes.to(at::kInt).contiguous(), r.scales.to(working).contiguous(),
                           r.zeros.to(working).contiguous(), r.g_idx.to(at::kInt).contiguous(), summary);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pack(const at::Tensor& codes, const at::Tensor& zeros,
                                                    const at::Tensor& scales, const at::Tensor& g_idx,
                                                    std::int64_t bits, std::int64_t group_size, bool sym,
                                                    const std::string& format,
                                                    std::optional<at::ScalarType> scale_dtype,
                                                    const std::string& layer) {
  return translated([&] {
    const std::string name = name_or(layer, "pack");
    if (codes.dim() != 2) {
      throw ShapeError(Where{.tensor = name + ".codes"}, "codes are a matrix (N, K) in GPTQ's orientation",
                       "2 dimensions", std::to_string(codes.dim()));
    }
    quant_linear::QuantSpec spec;
    spec.out_features = codes.size(0);
    spec.in_features = codes.size(1);
    spec.bits = int(bits);
    spec.group_size = int(group_size);
    spec.sym = sym;
    spec.zero_format = zero_format(format, name);
    const auto p = quant_linear::pack(codes, zeros, scales, g_idx, spec, scale_dtype.value_or(at::kHalf), name);
    return std::make_tuple(on(p.qweight, codes), on(p.qzeros, codes), on(p.scales, codes));
  });
}

std::tuple<at::Tensor, at::Tensor> unpack(const at::Tensor& qweight, const at::Tensor& qzeros, std::int64_t bits,
                                          std::int64_t group_size, const std::string& format,
                                          const std::string& layer) {
  return translated([&] {
    const std::string name = name_or(layer, "unpack");
    const auto spec = spec_of_qweight(qweight, bits, group_size, /*desc_act=*/true, format, name);
    quant_linear::validate_packed_words(qweight, qzeros, spec, name);
    return std::make_tuple(on(quant_linear::unpack_codes(qweight, spec, name), qweight),
                           on(quant_linear::unpack_zero_points(qzeros, spec, name), qweight));
  });
}

at::Tensor dequantize(const at::Tensor& qweight, const at::Tensor& qzeros, const at::Tensor& scales,
                      const at::Tensor& g_idx, std::int64_t bits, std::int64_t group_size, bool desc_act,
                      const std::string& format, const std::string& layer) {
  return translated([&] {
    const std::string name = name_or(layer, "dequantize");
    const auto spec = spec_of_qweight(qweight, bits, group_size, desc_act, format, name);
    const quant_linear::PackedWeights packed{qweight, qzeros, scales, g_idx};
    quant_linear::validate_packed(packed, spec, name);
    for (const at::Tensor* t : {&qzeros, &scales, &g_idx}) {
      if (t->device() != qweight.device()) {
        throw ConfigError(Where{.layer = name}, "the GPTQ buffers share one device", qweight.device().str(),
                          t->device().str());
      }
    }
    return quant_linear::dequantize_weights(packed, spec);
  });
}

at::Tensor marlin_repack(const at::Tensor& qweight, const std::optional<at::Tensor>& perm, std::int64_t size_k,
                         std::int64_t size_n, const std::string& layer) {
  return translated([&] {
    const std::string name = name_or(layer, "marlin_repack");
    return marlin::repack_gptq_qweight(qweight, perm.value_or(at::Tensor()), size_k, size_n, name);
  });
}

at::Tensor marlin_gemm(const at::Tensor& x, const at::Tensor& b, const at::Tensor& s,
                       const std::optional<at::Tensor>& perm, const std::optional<at::Tensor>& bias,
                       std::int64_t size_k, std::int64_t size_n, std::int64_t group_size, bool check_finite,
                       const std::string& layer) {
  return translated([&] {
    const marlin::MarlinSpec spec{size_k, size_n, int(group_size), perm.has_value()};
    const marlin::MarlinWeights w{spec, b, s, perm.value_or(at::Tensor()), bias.value_or(at::Tensor())};
    return marlin::gemm(x, w, name_or(layer, "marlin_gemm"), marlin::GemmOptions{.check_finite = check_finite});
  });
}

}  // namespace qh::ops
