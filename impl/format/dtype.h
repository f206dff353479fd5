// safetensors dtypes (huggingface/safetensors src/tensor.rs `enum Dtype`; FORMATS.md section 5). The enumerator
// order is the reference's declaration order, which is also its alignment order: the writer sorts tensors by it.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace qh::format {

enum class Dtype : std::uint8_t {
  BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
  I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64,
};

inline constexpr int kDtypeCount = int(Dtype::U64) + 1;

std::string_view dtype_name(Dtype dtype);                      // "F16"
std::optional<Dtype> dtype_from_name(std::string_view name);   // nullopt for an unknown string
int dtype_bits(Dtype dtype);                                   // 4 for F4, 6 for F6_*, 16 for F16, ...
std::string_view dtype_names_list();                           // "BOOL, F4, ..., U64" for error messages

}  // namespace qh::format
