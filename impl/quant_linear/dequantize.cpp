#include "impl/quant_linear/dequantize.h"

#include <ATen/ATen.h>

#include "impl/core/errors.h"

#ifdef QH_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/kernels.h"
#endif

namespace qh::quant_linear {

namespace {

#ifdef QH_WITH_CUDA
kernels::DType kernel_dtype(c10::ScalarType type) {
  switch (type) {
    case at::kHalf: return kernels::DType::F16;
    case at::kBFloat16: return kernels::DType::BF16;
    default: return kernels::DType::F32;
  }
}

at::Tensor dequantize_cuda(const PackedWeights& p, const QuantSpec& spec) {
  const c10::Device device = p.qweight.device();
  const c10::cuda::CUDAGuard guard(device);
  const at::Tensor qweight = p.qweight.contiguous(), qzeros = p.qzeros.to(device).contiguous();
  const at::Tensor scales = p.scales.to(device).contiguous(), g_idx = p.g_idx.to(device).contiguous();
  at::Tensor out = at::empty({spec.in_features, spec.out_features}, scales.options());
  kernels::GptqDequantArgs a;
  a.qweight = static_cast<const std::uint32_t*>(qweight.data_ptr());
  a.qzeros = static_cast<const std::uint32_t*>(qzeros.data_ptr());
  a.scales = scales.data_ptr();
  a.g_idx = g_idx.data_ptr<std::int32_t>();
  a.k = spec.in_features;
  a.n = spec.out_features;
  a.groups = spec.groups();
  a.bits = spec.bits;
  a.zero_offset = spec.zero_format == ZeroFormat::V1 ? 1 : 0;
  a.dtype = kernel_dtype(scales.scalar_type());
  a.out = out.data_ptr();
  if (const cudaError_t e = kernels::launch_gptq_dequant(a, c10::cuda::getCurrentCUDAStream(device.index()));
      e != cudaSuccess) {
    throw NumericError(Where{}, "the dequantize kernel must launch", "cudaSuccess", cudaGetErrorString(e));
  }
  return out;
}
#endif

}  // namespace

at::Tensor dequantize_weights(const PackedWeights& packed, const QuantSpec& spec) {
  const c10::Device device = packed.qweight.device();
  if (device.is_cpu()) return dequantize_reference(packed, spec, packed.scales.scalar_type(), "");
#ifdef QH_WITH_CUDA
  if (device.is_cuda()) return dequantize_cuda(packed, spec);
#endif
  throw ConfigError(Where{}, "GPTQ buffers can be dequantized on the CPU or a CUDA device", "cpu or cuda",
                    device.str());
}

}  // namespace qh::quant_linear
