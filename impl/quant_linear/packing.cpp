#include "impl/quant_linear/packing.h"

#include <ATen/ATen.h>

#include <span>

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"
#include "impl/format/gptq_pack.h"

namespace qh::quant_linear {

namespace {

std::string tensor_name(const std::string& layer, const char* suffix) { return layer + "." + suffix; }

template <class T>
std::span<const T> span_of(const at::Tensor& t) {
  return {static_cast<const T*>(t.data_ptr()), std::size_t(t.numel())};
}

at::Tensor words_tensor(const std::vector<std::uint32_t>& words, std::int64_t rows, std::int64_t cols) {
  at::Tensor out = at::empty({rows, cols}, at::kInt);
  std::memcpy(out.data_ptr(), words.data(), words.size() * sizeof(std::uint32_t));
  return out;
}

at::Tensor bytes_tensor(const std::vector<std::uint8_t>& values, std::int64_t rows, std::int64_t cols) {
  return at::from_blob(const_cast<std::uint8_t*>(values.data()), {rows, cols}, at::kByte).to(at::kInt);
}

// (rows, cols) integers in [0, maxq] as contiguous bytes, transposed first when `transpose`.
std::vector<std::uint8_t> small_ints(const at::Tensor& values, bool transpose) {
  const at::Tensor t = (transpose ? values.t() : values).to(at::kCPU).to(at::kByte).contiguous();
  const auto s = span_of<std::uint8_t>(t);
  return {s.begin(), s.end()};
}

void expect_shape(const at::Tensor& t, std::vector<std::int64_t> want, const std::string& file,
                  const std::string& tensor) {
  if (t.sizes().vec() != want) {
    throw ShapeError(Where{.file = file, .tensor = tensor}, "buffer shape must follow the layer's bits and sizes",
                     shape_text(want), shape_text(t.sizes().vec()));
  }
}

void expect_dtype(const at::Tensor& t, std::initializer_list<c10::ScalarType> allowed, const std::string& file,
                  const std::string& tensor) {
  std::string names;
  for (c10::ScalarType a : allowed) {
    if (t.scalar_type() == a) return;
    names += (names.empty() ? "" : " or ") + std::string(c10::toString(a));
  }
  throw FormatError(FormatError::Code::Other, Where{.file = file, .tensor = tensor},
                    "buffer dtype must be what GPTQ QuantLinear registers", names, c10::toString(t.scalar_type()));
}

// Integers to be packed must lie in [0, maxq]: NumericError naming the tensor with the range found.
void expect_on_grid(const at::Tensor& values, int maxq, const std::string& tensor, const char* rule) {
  const at::Tensor v = values.to(at::kCPU).to(at::kLong);
  const std::int64_t low = v.min().item<std::int64_t>(), high = v.max().item<std::int64_t>();
  if (low < 0 || high > maxq) {
    throw NumericError(Where{.tensor = tensor}, rule, "0 .. " + std::to_string(maxq),
                       std::to_string(low) + " .. " + std::to_string(high));
  }
}

// The dimension a buffer packs: qweight packs K (inputs), qzeros packs N (zero points, one per output).
enum class PackedDim { K, N };

// "4-bit qzeros pack 8 zero points per int32", "3-bit qweight packs 32 inputs into 3 int32 words".
std::string packing_reason(int bits, PackedDim dim) {
  const std::string tensor = dim == PackedDim::K ? "qweight packs " : "qzeros pack ";
  const std::string values = dim == PackedDim::K ? " inputs" : " zero points";
  const std::string count = std::to_string(format::pack_multiple(bits));
  return std::to_string(bits) + "-bit " + tensor + count + values +
         (bits == 3 ? " into 3 int32 words" : " per int32");
}

// ShapeError naming the layer, the rule per bit width and the numbers when `count` (K or N) is not a multiple of
// format::pack_multiple(bits).
void check_fills_words(std::int64_t count, int bits, PackedDim dim, const std::string& layer) {
  const std::int64_t multiple = format::pack_multiple(bits);
  if (count % multiple == 0) return;
  const std::string symbol = dim == PackedDim::K ? "K" : "N";
  const std::string rule =
      dim == PackedDim::K ? "in_features K must fill whole int32 words of qweight (K * bits / 32 rows)"
                          : "out_features N must fill whole int32 words of qzeros (N * bits / 32 columns)";
  throw ShapeError(Where{.layer = layer},
                   rule + ": a multiple of 16 at 2 bits, 32 at 3 bits (32 values span 3 words), 8 at 4 bits, "
                          "4 at 8 bits",
                   symbol + " % " + std::to_string(multiple) + " == 0",
                   symbol + " = " + std::to_string(count) + " is not a multiple of " + std::to_string(multiple) +
                       " (" + packing_reason(bits, dim) + ")");
}

}  // namespace

const char* checkpoint_format_name(ZeroFormat format) { return format == ZeroFormat::V1 ? "gptq" : "gptq_v2"; }

void QuantSpec::validate(const std::string& layer) const {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    throw ConfigError(Where{.layer = layer}, "GPTQ packs 2, 3, 4 or 8 bits", "2, 3, 4 or 8", std::to_string(bits));
  }
  if (group_size != -1 && group_size <= 0) {
    throw ConfigError(Where{.layer = layer}, "group_size is -1 (one group) or positive", "-1 or > 0",
                      std::to_string(group_size));
  }
  if (in_features <= 0 || out_features <= 0) {
    throw ShapeError(Where{.layer = layer}, "a linear layer has inputs and outputs", "K > 0 and N > 0",
                     "K = " + std::to_string(in_features) + ", N = " + std::to_string(out_features));
  }
  // qweight has K * b / 32 rows and qzeros N * b / 32 columns (FORMATS.md 1.1; GPTQModel packs N = 2736 at 4 bits
  // as 342 qzeros columns), so K and N must fill whole words at the layer's width.
  check_fills_words(in_features, bits, PackedDim::K, layer);
  check_fills_words(out_features, bits, PackedDim::N, layer);
}

PackedWeights pack(const at::Tensor& codes, const at::Tensor& zeros, const at::Tensor& scales, const at::Tensor& g_idx,
                   const QuantSpec& spec, c10::ScalarType scale_dtype, const std::string& layer) {
  spec.validate(layer);
  const std::int64_t k = spec.in_features, n = spec.out_features, groups = spec.groups();
  expect_shape(codes, {n, k}, "", tensor_name(layer, "codes"));
  expect_shape(zeros, {n, groups}, "", tensor_name(layer, "zeros"));
  expect_shape(scales, {n, groups}, "", tensor_name(layer, "scales"));
  expect_shape(g_idx, {k}, "", tensor_name(layer, "g_idx"));
  expect_on_grid(codes, spec.maxq(), tensor_name(layer, "codes"),
                 "codes lie on the integer grid (a code outside it would spill into its neighbours' bits)");
  expect_on_grid(zeros, spec.maxq(), tensor_name(layer, "zeros"), "zero points lie on the integer grid");
  const at::Tensor zero_points = zeros.to(at::kCPU).to(at::kInt);
  PackedWeights out;
  out.qweight = words_tensor(format::pack_qweight(small_ints(codes, true), k, n, spec.bits), spec.qweight_rows(), n);
  // Pack the zero points as v2 (as they are), then let the field-by-field conversion make v1 and refuse a zero of 0.
  const auto v2 = format::pack_qzeros(small_ints(zero_points, true), groups, n, spec.bits);
  out.qzeros = words_tensor(spec.zero_format == ZeroFormat::V2
                                ? v2
                                : format::qzeros_v2_to_v1(v2, groups, n, spec.bits, tensor_name(layer, "qzeros")),
                            groups, spec.qzeros_cols());
  out.scales = scales.to(at::kCPU).t().to(scale_dtype).contiguous();
  out.g_idx = g_idx.to(at::kCPU).to(at::kInt).contiguous();
  return out;
}

at::Tensor codes_from_fake_quant(const at::Tensor& weight, const at::Tensor& scales, const at::Tensor& zeros,
                                 const at::Tensor& g_idx, const QuantSpec& spec, c10::ScalarType scale_dtype,
                                 PackRounding rounding, const std::string& layer) {
  const at::Tensor g = g_idx.to(at::kCPU).to(at::kLong);
  const auto all = at::indexing::Slice();
  const at::Tensor s32 = scales.to(at::kCPU).to(at::kFloat);
  const at::Tensor scale_zeros = (zeros.to(at::kCPU).to(at::kFloat) * s32).index({all, g});  // (N, K)
  const at::Tensor divisor = (rounding == PackRounding::AutoGptq ? s32.to(scale_dtype) : s32).index({all, g});
  // As the tools compute it: (W + scale_zero) / divisor in float32 after promoting fp16 W, then torch.round.
  const at::Tensor codes = at::round((weight.to(at::kCPU).to(at::kFloat) + scale_zeros) / divisor.to(at::kFloat));
  const at::Tensor bad = (codes < 0) | (codes > spec.maxq()) | codes.isnan();
  if (bad.any().item<bool>()) {
    const at::Tensor where = bad.nonzero()[0];
    const std::int64_t row = where[0].item<std::int64_t>(), col = where[1].item<std::int64_t>();
    throw NumericError(Where{.layer = layer}, "a fake-quantized weight must map back onto the integer grid",
                       "codes 0 .. " + std::to_string(spec.maxq()),
                       std::to_string(codes[row][col].item<double>()) + " at row " + std::to_string(row) +
                           ", column " + std::to_string(col) + " (the tools would write a corrupt word here)");
  }
  return codes.to(at::kInt);
}

at::Tensor unpack_codes(const at::Tensor& qweight, const QuantSpec& spec, const std::string& layer) {
  (void)layer;
  const at::Tensor q = qweight.to(at::kCPU).contiguous();
  return bytes_tensor(format::unpack_qweight(span_of<std::uint32_t>(q), spec.in_features, spec.out_features, spec.bits),
                      spec.in_features, spec.out_features);
}

at::Tensor unpack_zero_points(const at::Tensor& qzeros, const QuantSpec& spec, const std::string& layer) {
  const at::Tensor z = qzeros.to(at::kCPU).contiguous();
  const std::int64_t groups = spec.groups(), n = spec.out_features;
  auto words = std::vector<std::uint32_t>(span_of<std::uint32_t>(z).begin(), span_of<std::uint32_t>(z).end());
  if (spec.zero_format == ZeroFormat::V1) {
    words = format::qzeros_v1_to_v2(words, groups, n, spec.bits, tensor_name(layer, "qzeros"));
  }
  return bytes_tensor(format::unpack_qzeros(words, groups, n, spec.bits), groups, n);
}

at::Tensor dequantize_reference(const PackedWeights& packed, const QuantSpec& spec, c10::ScalarType out_dtype,
                                const std::string& layer) {
  const at::Tensor q = unpack_codes(packed.qweight, spec, layer).to(at::kFloat);  // (K, N)
  const at::Tensor z = unpack_zero_points(packed.qzeros, spec, layer).to(at::kFloat);  // (groups, N)
  const at::Tensor g = packed.g_idx.to(at::kCPU).to(at::kLong);
  const at::Tensor s = packed.scales.to(at::kCPU).to(at::kFloat);
  return (s.index_select(0, g) * (q - z.index_select(0, g))).to(out_dtype);
}

at::Tensor convert_qzeros(const at::Tensor& qzeros, const QuantSpec& spec, ZeroFormat to, const std::string& layer) {
  if (spec.zero_format == to) return qzeros;
  const at::Tensor z = qzeros.to(at::kCPU).contiguous();
  const auto words = span_of<std::uint32_t>(z);
  const std::int64_t groups = spec.groups(), n = spec.out_features;
  const std::string name = tensor_name(layer, "qzeros");
  return words_tensor(to == ZeroFormat::V2 ? format::qzeros_v1_to_v2(words, groups, n, spec.bits, name)
                                           : format::qzeros_v2_to_v1(words, groups, n, spec.bits, name),
                      groups, spec.qzeros_cols())
      .to(qzeros.device());
}

std::optional<ZeroFormat> zero_format_from_qzeros(const at::Tensor& qzeros, const QuantSpec& spec) {
  const at::Tensor z = qzeros.to(at::kCPU).contiguous();
  const auto fields = format::unpack_qzeros(std::vector<std::uint32_t>(span_of<std::uint32_t>(z).begin(),
                                                                       span_of<std::uint32_t>(z).end()),
                                            spec.groups(), spec.out_features, spec.bits);
  const auto all_equal = [&](std::uint8_t v) {
    return std::all_of(fields.begin(), fields.end(), [v](std::uint8_t f) { return f == v; });
  };
  const auto mid = std::uint8_t(1 << (spec.bits - 1));
  if (all_equal(mid - 1)) return ZeroFormat::V1;
  if (all_equal(mid)) return ZeroFormat::V2;
  return std::nullopt;
}

void validate_packed_words(const at::Tensor& qweight, const at::Tensor& qzeros, const QuantSpec& spec,
                           const std::string& layer, const std::string& file) {
  spec.validate(layer);
  const std::string qw = tensor_name(layer, "qweight"), qz = tensor_name(layer, "qzeros");
  expect_dtype(qweight, {at::kInt}, file, qw);
  expect_dtype(qzeros, {at::kInt}, file, qz);
  expect_shape(qweight, {spec.qweight_rows(), spec.out_features}, file, qw);
  expect_shape(qzeros, {spec.groups(), spec.qzeros_cols()}, file, qz);
}

void validate_packed(const PackedWeights& p, const QuantSpec& spec, const std::string& layer,
                     const std::string& file) {
  validate_packed_words(p.qweight, p.qzeros, spec, layer, file);
  const std::string scales = tensor_name(layer, "scales"), g_idx = tensor_name(layer, "g_idx");
  expect_dtype(p.scales, {at::kHalf, at::kBFloat16, at::kFloat}, file, scales);
  expect_dtype(p.g_idx, {at::kInt}, file, g_idx);
  expect_shape(p.scales, {spec.groups(), spec.out_features}, file, scales);
  expect_shape(p.g_idx, {spec.in_features}, file, g_idx);

  const at::Tensor g = p.g_idx.to(at::kCPU);
  const int low = g.min().item<int>(), high = g.max().item<int>();
  if (low < 0 || high >= spec.groups()) {
    throw FormatError(FormatError::Code::Other, Where{.file = file, .tensor = g_idx},
                      "every g_idx entry names a row of scales/qzeros", "0 .. " + std::to_string(spec.groups() - 1),
                      std::to_string(low) + " .. " + std::to_string(high));
  }
  if (!spec.desc_act) {
    const at::Tensor expected = at::arange(spec.in_features, at::kInt).div(spec.group_length(), "floor");
    if (!g.equal(expected)) {
      const std::int64_t k = (g != expected).nonzero()[0][0].item<std::int64_t>();
      throw FormatError(FormatError::Code::Other, Where{.file = file, .tensor = g_idx},
                        "without desc_act, g_idx[k] must be k / group_size (kernels that ignore g_idx rely on it)",
                        "g_idx[" + std::to_string(k) + "] = " + std::to_string(expected[k].item<int>()),
                        std::to_string(g[k].item<int>()) + " (is the checkpoint act-order with desc_act false?)");
    }
  }
  const at::Tensor s = p.scales.to(at::kCPU).to(at::kFloat);
  if (!s.isfinite().all().item<bool>()) {
    const at::Tensor where = (~s.isfinite()).nonzero()[0];
    throw NumericError(Where{.file = file, .tensor = scales}, "scales must be finite", "finite values",
                       std::to_string(s[where[0]][where[1]].item<float>()) + " at group " +
                           std::to_string(where[0].item<std::int64_t>()) + ", column " +
                           std::to_string(where[1].item<std::int64_t>()));
  }
  // v1 zero words hold zero - 1; a field of all ones is a writer's -1 that v1 cannot represent (the word is
  // corrupt). unpack_zero_points refuses it with the tensor's name.
  const at::Tensor zero_points = unpack_zero_points(p.qzeros, spec, layer);
  if (spec.sym) {
    // A symmetric grid's zero point is (maxq + 1) / 2 everywhere (FORMATS.md 2.3); anything else is a damaged word
    // (GPTQModel v2.2.0's 3-bit v2 -> v1 constants produce exactly that) or a config that lies about sym.
    const int mid = 1 << (spec.bits - 1);
    const std::int64_t off = zero_points.ne(mid).sum().item<std::int64_t>();
    if (off > 0) {
      throw FormatError(FormatError::Code::Other, Where{.file = file, .tensor = tensor_name(layer, "qzeros")},
                        "sym: true means every zero point is 2^(bits-1)", "all " + std::to_string(mid),
                        std::to_string(off) + " of " + std::to_string(zero_points.numel()) + " differ (" +
                            checkpoint_format_name(spec.zero_format) + " reading)");
    }
  }
}

}  // namespace qh::quant_linear
