#include "impl/marlin/repack.h"

#include <ATen/ATen.h>

#include "impl/core/errors.h"
#include "impl/core/shape_text.h"
#include "impl/marlin/layout.h"
#include "impl/quant_linear/packing.h"

#ifdef QH_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/kernels.h"
#endif

namespace qh::marlin {

at::Tensor repack_gptq_qweight(const at::Tensor& qweight, const at::Tensor& perm, std::int64_t k, std::int64_t n,
                               const std::string& layer) {
  if (k <= 0 || k % 16 != 0 || n <= 0 || n % 64 != 0) {
    throw ShapeError(Where{.layer = layer}, "Marlin tiles need K % 16 == 0 and N % 64 == 0", "multiples",
                     "K = " + std::to_string(k) + ", N = " + std::to_string(n));
  }
  if (qweight.scalar_type() != at::kInt || qweight.sizes().vec() != std::vector<std::int64_t>{k / 8, n}) {
    throw ShapeError(Where{.tensor = layer + ".qweight"}, "4-bit GPTQ qweight is (K/8, N) int32",
                     shape_text(std::vector<std::int64_t>{k / 8, n}) + " int32",
                     shape_text(qweight.sizes().vec()) + " " + c10::toString(qweight.scalar_type()));
  }
  if (perm.defined() && (perm.scalar_type() != at::kInt || perm.numel() != k)) {
    throw ShapeError(Where{.tensor = layer + ".perm"}, "the act-order permutation has one int32 entry per input",
                     std::to_string(k) + " int32", std::to_string(perm.numel()) + " " + c10::toString(perm.scalar_type()));
  }
  if (perm.defined()) {  // the kernel gathers rows by perm: an entry outside 0 .. K-1 would read past qweight
    // One reduction and one device round trip for both ends (min() and max() with an item() each were two). H200,
    // a 4096 x 4096 act-order layer: 57.6 -> 49.9 us, of which the repack kernel is 15 (ncu).
    const auto [low_t, high_t] = at::aminmax(perm);
    const at::Tensor ends = at::stack({low_t, high_t}).cpu();
    const std::int64_t low = ends[0].item<std::int64_t>(), high = ends[1].item<std::int64_t>();
    if (low < 0 || high >= k) {
      throw ShapeError(Where{.tensor = layer + ".perm"}, "perm names input rows", "0 .. " + std::to_string(k - 1),
                       std::to_string(low) + " .. " + std::to_string(high));
    }
  }
  if (qweight.device().is_cpu()) {
    const quant_linear::QuantSpec spec{k, n, 4, -1, true, false, quant_linear::ZeroFormat::V1};
    at::Tensor codes = quant_linear::unpack_codes(qweight, spec, layer);  // (K, N)
    if (perm.defined()) codes = codes.index_select(0, perm.to(at::kLong));
    return pack_weights(codes, layer);
  }
#ifdef QH_WITH_CUDA
  const c10::cuda::CUDAGuard guard(qweight.device());
  const at::Tensor q = qweight.contiguous();
  const at::Tensor p = perm.defined() ? perm.to(qweight.device()).contiguous() : at::Tensor();
  at::Tensor out = at::empty({k / 16, 2 * n}, q.options());
  const cudaError_t e = kernels::launch_marlin_repack(
      static_cast<const std::uint32_t*>(q.data_ptr()), p.defined() ? p.data_ptr<std::int32_t>() : nullptr, k, n,
      static_cast<std::uint32_t*>(out.data_ptr()), c10::cuda::getCurrentCUDAStream(qweight.device().index()));
  if (e != cudaSuccess) {
    throw NumericError(Where{.layer = layer}, "the Marlin repack kernel must launch", "cudaSuccess",
                       cudaGetErrorString(e));
  }
  return out;
#else
  throw ConfigError(Where{.layer = layer}, "a CUDA repack needs a build with CUDA", "QH_CUDA on", "off");
#endif
}

}  // namespace qh::marlin
