// Shape functions of the qharness ops for the Meta key: what FakeTensor (torch.compile, torch.library.opcheck) and
// meta tracing see. Output shapes and dtypes follow the real kernels (ops.cpp) exactly; sizes are SymInts, so a
// symbolic batch or sequence length traces. Values are not checked here (meta tensors have none); the integer
// arguments are, where a wrong one would give a wrong shape.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "impl/ops/ops.h"

namespace qh::ops {

namespace {

at::TensorOptions like(const at::Tensor& t, at::ScalarType dtype) { return t.options().dtype(dtype); }

void check_bits(std::int64_t bits) {
  TORCH_CHECK_VALUE(bits == 2 || bits == 3 || bits == 4 || bits == 8,
                    "qharness.ConfigError: GPTQ packs 2, 3, 4 or 8 bits, found ", bits);
}

c10::SymInt groups_of(const c10::SymInt& k, std::int64_t group_size) {
  return group_size == -1 ? c10::SymInt(1) : (k + group_size - 1) / group_size;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gptq_quantize_meta(
    const at::Tensor& weight, const at::Tensor& hessian, std::int64_t bits, std::int64_t group_size, bool sym,
    bool desc_act, bool static_groups, double damp_percent, double damp_auto_increment, bool float64,
    const std::string& layer) {
  (void)hessian, (void)sym, (void)desc_act, (void)static_groups, (void)damp_percent, (void)damp_auto_increment,
      (void)layer;
  check_bits(bits);
  TORCH_CHECK_VALUE(weight.dim() == 2, "qharness.ShapeError: the weight is (out_features, in_features), found ",
                    weight.dim(), " dimensions");
  const c10::SymInt n = weight.sym_size(0), k = weight.sym_size(1), g = groups_of(k, group_size);
  const at::ScalarType working = float64 ? at::kDouble : at::kFloat;
  return {at::empty_symint({n, k}, like(weight, at::kInt)), at::empty_symint({n, g}, like(weight, working)),
          at::empty_symint({n, g}, like(weight, working)), at::empty_symint({k}, like(weight, at::kInt)),
          at::empty({std::int64_t(std::size(kGptqSummaryFields))}, like(weight, at::kDouble))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pack_meta(const at::Tensor& codes, const at::Tensor& zeros,
                                                         const at::Tensor& scales, const at::Tensor& g_idx,
                                                         std::int64_t bits, std::int64_t group_size, bool sym,
                                                         const std::string& format,
                                                         std::optional<at::ScalarType> scale_dtype,
                                                         const std::string& layer) {
  (void)zeros, (void)scales, (void)g_idx, (void)sym, (void)format, (void)layer;
  check_bits(bits);
  TORCH_CHECK_VALUE(codes.dim() == 2, "qharness.ShapeError: codes are (N, K), found ", codes.dim(), " dimensions");
  const c10::SymInt n = codes.sym_size(0), k = codes.sym_size(1), g = groups_of(k, group_size);
  return {at::empty_symint({k * bits / 32, n}, like(codes, at::kInt)),
          at::empty_symint({g, n * bits / 32}, like(codes, at::kInt)),
          at::empty_symint({g, n}, like(codes, scale_dtype.value_or(at::kHalf)))};
}

std::tuple<at::Tensor, at::Tensor> unpack_meta(const at::Tensor& qweight, const at::Tensor& qzeros, std::int64_t bits,
                                               std::int64_t group_size, const std::string& format,
                                               const std::string& layer) {
  (void)group_size, (void)format, (void)layer;
  check_bits(bits);
  TORCH_CHECK_VALUE(qweight.dim() == 2 && qzeros.dim() == 2, "qharness.ShapeError: qweight and qzeros are matrices");
  return {at::empty_symint({qweight.sym_size(0) * 32 / bits, qweight.sym_size(1)}, like(qweight, at::kInt)),
          at::empty_symint({qzeros.sym_size(0), qzeros.sym_size(1) * 32 / bits}, like(qweight, at::kInt))};
}

at::Tensor dequantize_meta(const at::Tensor& qweight, const at::Tensor& qzeros, const at::Tensor& scales,
                           const at::Tensor& g_idx, std::int64_t bits, std::int64_t group_size, bool desc_act,
                           const std::string& format, const std::string& layer) {
  (void)qzeros, (void)g_idx, (void)group_size, (void)desc_act, (void)format, (void)layer;
  check_bits(bits);
  TORCH_CHECK_VALUE(qweight.dim() == 2, "qharness.ShapeError: qweight is (K * bits / 32, N)");
  return at::empty_symint({qweight.sym_size(0) * 32 / bits, qweight.sym_size(1)}, like(qweight, scales.scalar_type()));
}

at::Tensor marlin_repack_meta(const at::Tensor& qweight, const std::optional<at::Tensor>& perm, std::int64_t size_k,
                              std::int64_t size_n, const std::string& layer) {
  (void)perm, (void)layer;
  TORCH_CHECK_VALUE(size_k > 0 && size_k % 16 == 0 && size_n > 0 && size_n % 64 == 0,
                    "qharness.ShapeError: Marlin tiles need K % 16 == 0 and N % 64 == 0, found K = ", size_k,
                    ", N = ", size_n);
  return at::empty({size_k / 16, 2 * size_n}, like(qweight, at::kInt));
}

at::Tensor marlin_gemm_meta(const at::Tensor& x, const at::Tensor& b, const at::Tensor& s,
                            const std::optional<at::Tensor>& perm, const std::optional<at::Tensor>& bias,
                            std::int64_t size_k, std::int64_t size_n, std::int64_t group_size, bool check_finite,
                            const std::string& layer) {
  (void)b, (void)s, (void)perm, (void)bias, (void)group_size, (void)check_finite, (void)layer;
  TORCH_CHECK_VALUE(x.dim() >= 1, "qharness.ShapeError: the input has a last dimension of in_features");
  std::vector<c10::SymInt> shape(x.sym_sizes().begin(), x.sym_sizes().end());
  TORCH_CHECK_VALUE(shape.back() == size_k, "qharness.ShapeError: the input's last dimension is in_features (",
                    size_k, ")");
  shape.back() = c10::SymInt(size_n);
  return at::empty_symint(shape, x.options());
}

}  // namespace qh::ops
