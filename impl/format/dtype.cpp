#include "impl/format/dtype.h"

#include <array>
#include <string>

namespace qh::format {

namespace {

struct DtypeInfo {
  std::string_view name;
  int bits;
};

// Indexed by Dtype. Bit sizes from FORMATS.md section 5.
constexpr std::array<DtypeInfo, kDtypeCount> kInfo{{
    {"BOOL", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8}, {"I8", 8}, {"F8_E5M2", 8}, {"F8_E4M3", 8},
    {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16}, {"U16", 16}, {"F16", 16}, {"BF16", 16},
    {"I32", 32}, {"U32", 32}, {"F32", 32}, {"C64", 64}, {"F64", 64}, {"I64", 64}, {"U64", 64},
}};

}  // namespace

std::string_view dtype_name(Dtype dtype) { return kInfo[std::size_t(dtype)].name; }

int dtype_bits(Dtype dtype) { return kInfo[std::size_t(dtype)].bits; }

std::optional<Dtype> dtype_from_name(std::string_view name) {
  for (int i = 0; i < kDtypeCount; ++i) {
    if (kInfo[std::size_t(i)].name == name) return Dtype(i);
  }
  return std::nullopt;
}

std::string_view dtype_names_list() {
  static const std::string list = [] {
    std::string out;
    for (const auto& info : kInfo) {
      if (!out.empty()) out += ", ";
      out += info.name;
    }
    return out;
  }();
  return list;
}

}  // namespace qh::format
