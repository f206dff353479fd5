// GPTQ dequantization on the buffers' device: the CUDA kernel (kernels/gptq_dequant.cu) on a GPU, the CPU
// reference (packing.h dequantize_reference) elsewhere. Both form scale * (q - z) in float32 and round once to the
// scales' dtype, so they agree bit for bit.
#pragma once

#include <ATen/core/Tensor.h>

#include "impl/quant_linear/packing.h"

namespace qh::quant_linear {

// W (K, N) in packed.scales' dtype on packed.qweight's device. The buffers must have passed validate_packed.
at::Tensor dequantize_weights(const PackedWeights& packed, const QuantSpec& spec);

}  // namespace qh::quant_linear
