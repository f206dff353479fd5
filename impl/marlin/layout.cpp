#include "impl/marlin/layout.h"

#include <ATen/ATen.h>

#include <vector>

#include "impl/core/errors.h"

namespace qh::marlin {

namespace {

template <std::size_t N>
at::Tensor as_index(const std::array<int, N>& perm) {
  return at::tensor(std::vector<std::int64_t>(perm.begin(), perm.end()), at::kLong);
}

void check_shape(std::int64_t k, std::int64_t n, const std::string& layer) {
  if (k <= 0 || k % 16 != 0 || n <= 0 || n % 64 != 0) {
    throw ShapeError(Where{.layer = layer}, "the Marlin layout needs whole 16x16 tiles and 1024-value chunks",
                     "K % 16 == 0 and N % 64 == 0", "K = " + std::to_string(k) + ", N = " + std::to_string(n));
  }
}

}  // namespace

const std::array<int, 1024>& weight_perm() {
  static const std::array<int, 1024> perm = [] {
    std::vector<int> pre;
    for (int i = 0; i < 32; ++i) {
      std::vector<int> perm1;
      const int col = i / 4;
      for (int block = 0; block < 2; ++block) {
        for (int row : {2 * (i % 4), 2 * (i % 4) + 1, 2 * (i % 4 + 4), 2 * (i % 4 + 4) + 1}) {
          perm1.push_back(16 * row + col + 8 * block);
        }
      }
      for (int j = 0; j < 4; ++j) {
        for (int p : perm1) pre.push_back(p + 256 * j);
      }
    }
    constexpr int interleave[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    std::array<int, 1024> out{};
    for (int t = 0; t < 128; ++t) {
      for (int i = 0; i < 8; ++i) out[std::size_t(8 * t + i)] = pre[std::size_t(8 * t + interleave[i])];
    }
    return out;
  }();
  return perm;
}

const std::array<int, 64>& scale_perm() {
  static const std::array<int, 64> perm = [] {
    std::array<int, 64> out{};
    for (int i = 0; i < 8; ++i) {
      for (int j = 0; j < 8; ++j) out[std::size_t(8 * i + j)] = i + 8 * j;
    }
    return out;
  }();
  return perm;
}

const std::array<int, 32>& scale_perm_single() {
  static const std::array<int, 32> perm = [] {
    std::array<int, 32> out{};
    for (int i = 0; i < 4; ++i) {
      int j = 0;
      for (int offset : {0, 1, 8, 9, 16, 17, 24, 25}) out[std::size_t(8 * i + j++)] = 2 * i + offset;
    }
    return out;
  }();
  return perm;
}

at::Tensor pack_weights(const at::Tensor& codes, const std::string& layer) {
  const std::int64_t k = codes.size(0), n = codes.size(1);
  check_shape(k, n, layer);
  const at::Tensor q = codes.to(at::kCPU).to(at::kLong);
  if (q.min().item<std::int64_t>() < 0 || q.max().item<std::int64_t>() > 15) {
    throw NumericError(Where{.layer = layer}, "Marlin stores 4-bit codes", "0 .. 15",
                       std::to_string(q.min().item<std::int64_t>()) + " .. " +
                           std::to_string(q.max().item<std::int64_t>()));
  }
  // Layer.pack steps 4-6: tiles along N in each row of K/16, the permutation per 1024 chunk, 8 nibbles per word.
  at::Tensor res = q.reshape({k / 16, 16, n / 16, 16}).permute({0, 2, 1, 3}).reshape({k / 16, n * 16});
  res = res.reshape({-1, 1024}).index_select(1, as_index(weight_perm())).reshape({k / 16, n * 2, 8});
  at::Tensor word = at::zeros({k / 16, n * 2}, at::kLong);
  for (int i = 0; i < 8; ++i) word.bitwise_or_(res.select(2, i).bitwise_left_shift(4 * i));
  // Words above 2^31 wrap to negative int32, as numpy's astype(uint32).view(int32) leaves them.
  return word.to(at::kInt);
}

at::Tensor unpack_weights(const at::Tensor& b, std::int64_t k, std::int64_t n, const std::string& layer) {
  check_shape(k, n, layer);
  if (b.sizes().vec() != std::vector<std::int64_t>{k / 16, 2 * n}) {
    throw ShapeError(Where{.tensor = layer + ".B"}, "Marlin B is (K/16, 2N) int32",
                     "(" + std::to_string(k / 16) + ", " + std::to_string(2 * n) + ")",
                     "(" + std::to_string(b.size(0)) + ", " + std::to_string(b.dim() > 1 ? b.size(1) : 0) + ")");
  }
  const at::Tensor words = b.to(at::kCPU).to(at::kLong).bitwise_and(0xFFFFFFFFLL);
  std::vector<at::Tensor> nibbles;
  for (int i = 0; i < 8; ++i) nibbles.push_back(words.bitwise_right_shift(4 * i).bitwise_and(15));
  const at::Tensor res = at::stack(nibbles, 2).reshape({-1, 1024});
  const at::Tensor inverse = at::argsort(as_index(weight_perm()));
  return res.index_select(1, inverse)
      .reshape({k / 16, n / 16, 16, 16})
      .permute({0, 2, 1, 3})
      .reshape({k, n})
      .to(at::kInt);
}

at::Tensor permute_scales(const at::Tensor& scales, bool grouped, const std::string& layer) {
  const std::int64_t n = scales.size(-1), width = grouped ? 64 : 32;
  if (n % width != 0) {
    throw ShapeError(Where{.tensor = layer + ".scales"}, "Marlin permutes scales in blocks of 64 (grouped) or 32",
                     "N % " + std::to_string(width) + " == 0", "N = " + std::to_string(n));
  }
  const at::Tensor index = (grouped ? as_index(scale_perm()) : as_index(scale_perm_single())).to(scales.device());
  return scales.reshape({-1, width}).index_select(1, index).reshape({-1, n}).contiguous();
}

at::Tensor unpermute_scales(const at::Tensor& s, bool grouped, const std::string& layer) {
  const std::int64_t n = s.size(-1), width = grouped ? 64 : 32;
  if (n % width != 0) {
    throw ShapeError(Where{.tensor = layer + ".s"}, "Marlin permutes scales in blocks of 64 (grouped) or 32",
                     "N % " + std::to_string(width) + " == 0", "N = " + std::to_string(n));
  }
  const at::Tensor inverse =
      at::argsort(grouped ? as_index(scale_perm()) : as_index(scale_perm_single())).to(s.device());
  return s.reshape({-1, width}).index_select(1, inverse).reshape({-1, n}).contiguous();
}

}  // namespace qh::marlin
