// "[2, 3]" for any range of dimensions (std::vector<uint64_t>, at::IntArrayRef, ...), for error messages.
#pragma once

#include <string>

namespace qh {

template <class Dims>
std::string shape_text(const Dims& dims) {
  std::string out = "[";
  bool first = true;
  for (const auto d : dims) {
    out += (first ? "" : ", ") + std::to_string(d);
    first = false;
  }
  return out + "]";
}

}  // namespace qh
