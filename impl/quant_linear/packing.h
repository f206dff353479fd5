// GPTQ QuantLinear buffers as at::Tensor (FORMATS.md 1.1): qweight (K*b/32, N) int32, qzeros (groups, N*b/32)
// int32, scales (groups, N) fp16/bf16/fp32, g_idx (K,) int32. The bit layout itself is impl/format/gptq_pack's;
// this layer adds shapes, dtypes, the v1/v2 zero-point convention, the packing rules of the real tools, checks of
// untrusted buffers, and the reference dequantization.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <ATen/core/Tensor.h>

namespace qh::quant_linear {

// How qzeros stores a zero point z (FORMATS.md 1.5): V1 = checkpoint_format "gptq" (AutoGPTQ, GPTQModel's
// default on disk) stores z - 1; V2 = "gptq_v2" stores z.
enum class ZeroFormat { V1, V2 };
const char* checkpoint_format_name(ZeroFormat format);  // "gptq" / "gptq_v2"

struct QuantSpec {
  std::int64_t in_features = 0;   // K
  std::int64_t out_features = 0;  // N
  int bits = 4;                   // 2, 3, 4 or 8
  int group_size = 128;           // -1: one group for all of K
  bool sym = true;
  bool desc_act = false;
  ZeroFormat zero_format = ZeroFormat::V1;

  int maxq() const { return (1 << bits) - 1; }
  std::int64_t group_length() const { return group_size == -1 ? in_features : group_size; }
  std::int64_t groups() const { return (in_features + group_length() - 1) / group_length(); }
  // K * b / 32 and N * b / 32 (GPTQModel's K / pack_factor * b), whole numbers for a spec that passes validate().
  // AutoGPTQ writes K // 32 * b, the same number when K % 32 == 0 and too small otherwise (FORMATS.md 1.1).
  std::int64_t qweight_rows() const { return in_features * bits / 32; }
  std::int64_t qzeros_cols() const { return out_features * bits / 32; }
  // ConfigError (bits, group_size) or ShapeError (K or N not a whole number of packed words: K and N multiples of
  // 16, 32, 8, 4 at 2, 3, 4, 8 bits, format::pack_multiple), naming `layer`.
  void validate(const std::string& layer) const;
};

struct PackedWeights {
  at::Tensor qweight, qzeros, scales, g_idx;
};

// Packs integer codes (N, K) in [0, maxq], integer zero points (N, groups) and scales (N, groups) (GPTQ's
// orientation) with g_idx (K,), on the CPU. Zero points are stored per spec.zero_format: a v1 layer with a zero
// point of 0 cannot be written (its stored -1 corrupts the word) and is refused with a ConfigError suggesting
// gptq_v2. Scales are stored in `scale_dtype`.
PackedWeights pack(const at::Tensor& codes, const at::Tensor& zeros, const at::Tensor& scales, const at::Tensor& g_idx,
                   const QuantSpec& spec, c10::ScalarType scale_dtype, const std::string& layer);

// The codes that the tools' pack() derives from a fake-quantized weight (FORMATS.md 1.4):
// round((W[:, k] + scale*zero) / scale) per column k with its group g_idx[k], half to even.
enum class PackRounding {
  AutoGptq,   // divides by the scale rounded to scale_dtype, adds the float32 scale * zero
  GptqModel,  // divides by the float32 scale (v2.2.0)
};
// weight (N, K) in any float dtype; scales, zeros (N, groups) float32. Neither tool clamps; a code outside
// [0, maxq] would corrupt its word, so it is refused with a NumericError naming the layer, row and column.
at::Tensor codes_from_fake_quant(const at::Tensor& weight, const at::Tensor& scales, const at::Tensor& zeros,
                                 const at::Tensor& g_idx, const QuantSpec& spec, c10::ScalarType scale_dtype,
                                 PackRounding rounding, const std::string& layer);

// CPU int32 views of the packed integers: codes (K, N) and zero points (groups, N) (v1: stored + 1).
at::Tensor unpack_codes(const at::Tensor& qweight, const QuantSpec& spec, const std::string& layer);
at::Tensor unpack_zero_points(const at::Tensor& qzeros, const QuantSpec& spec, const std::string& layer);

// Reference dequantization on the CPU: W (K, N) = scales[g_idx[k], n] * (q[k, n] - z[g_idx[k], n]) formed in
// float32 (exact for fp16/bf16 scales: an 11- or 8-bit significand times an integer below 2^9) and rounded once to
// `out_dtype` (the same rounding as the tools' fp16 arithmetic). Assumes validated buffers.
at::Tensor dequantize_reference(const PackedWeights& packed, const QuantSpec& spec, c10::ScalarType out_dtype,
                                const std::string& layer);

// qzeros of `spec` rewritten for `to`, field by field (never by adding constants to words, FORMATS.md 1.5).
at::Tensor convert_qzeros(const at::Tensor& qzeros, const QuantSpec& spec, ZeroFormat to, const std::string& layer);

// What the stored zero points say about the format when every layer is symmetric: all fields 2^(b-1) - 1 -> V1,
// all 2^(b-1) -> V2; anything else (asymmetric layers) -> nullopt, undecidable from the words alone.
std::optional<ZeroFormat> zero_format_from_qzeros(const at::Tensor& qzeros, const QuantSpec& spec);

// Checks untrusted buffers against `spec` before anything reads them: dtypes, shapes (expected vs found), g_idx
// values in [0, groups), finite scales, and g_idx == k / G when desc_act is off (kernels that ignore g_idx would
// silently compute something else). Throws ShapeError, FormatError or NumericError naming `file`, the tensor
// (`layer`.qweight, ...) and the numbers.
void validate_packed(const PackedWeights& packed, const QuantSpec& spec, const std::string& layer,
                     const std::string& file = "");
// The part of validate_packed that qweight and qzeros alone allow (the spec, their dtypes and shapes): what
// unpack_codes and unpack_zero_points rely on.
void validate_packed_words(const at::Tensor& qweight, const at::Tensor& qzeros, const QuantSpec& spec,
                           const std::string& layer, const std::string& file = "");

}  // namespace qh::quant_linear
