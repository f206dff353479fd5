// The qharness torch operators (registered in registration.cpp; schemas documented there): the library's GPTQ,
// GPTQ packing, dequantization, Marlin repack and Marlin GEMM over at::Tensor arguments, one function per op that
// serves the CPU and CUDA dispatch keys (the library picks the device path), plus a shape function per op for the
// Meta key (fake tensors: torch.compile and meta tracing).
//
// Errors: a qh::Error becomes a c10 error whose message starts with "qharness.<Kind>: " (ShapeError, ConfigError,
// FormatError: ValueError in Python; NumericError, IoError: RuntimeError) and keeps the library's message whole,
// so the Python package can raise its own typed exceptions (impl/ops/python/qharness/errors.py).
#pragma once

#include <optional>
#include <string>
#include <tuple>

#include <ATen/core/Tensor.h>

namespace qh::ops {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gptq_quantize(
    const at::Tensor& weight, const at::Tensor& hessian, std::int64_t bits, std::int64_t group_size, bool sym,
    bool desc_act, bool static_groups, double damp_percent, double damp_auto_increment, bool float64,
    const std::string& layer);

std::tuple<at::Tensor, at::Tensor, at::Tensor> pack(const at::Tensor& codes, const at::Tensor& zeros,
                                                    const at::Tensor& scales, const at::Tensor& g_idx,
                                                    std::int64_t bits, std::int64_t group_size, bool sym,
                                                    const std::string& format,
                                                    std::optional<at::ScalarType> scale_dtype,
                                                    const std::string& layer);

std::tuple<at::Tensor, at::Tensor> unpack(const at::Tensor& qweight, const at::Tensor& qzeros, std::int64_t bits,
                                          std::int64_t group_size, const std::string& format,
                                          const std::string& layer);

at::Tensor dequantize(const at::Tensor& qweight, const at::Tensor& qzeros, const at::Tensor& scales,
                      const at::Tensor& g_idx, std::int64_t bits, std::int64_t group_size, bool desc_act,
                      const std::string& format, const std::string& layer);

at::Tensor marlin_repack(const at::Tensor& qweight, const std::optional<at::Tensor>& perm, std::int64_t size_k,
                         std::int64_t size_n, const std::string& layer);

at::Tensor marlin_gemm(const at::Tensor& x, const at::Tensor& b, const at::Tensor& s,
                       const std::optional<at::Tensor>& perm, const std::optional<at::Tensor>& bias,
                       std::int64_t size_k, std::int64_t size_n, std::int64_t group_size, bool check_finite,
                       const std::string& layer);

// Meta (shape) functions, same arguments; sizes are read as SymInts so symbolic shapes trace.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gptq_quantize_meta(
    const at::Tensor& weight, const at::Tensor& hessian, std::int64_t bits, std::int64_t group_size, bool sym,
    bool desc_act, bool static_groups, double damp_percent, double damp_auto_increment, bool float64,
    const std::string& layer);
std::tuple<at::Tensor, at::Tensor, at::Tensor> pack_meta(const at::Tensor& codes, const at::Tensor& zeros,
                                                         const at::Tensor& scales, const at::Tensor& g_idx,
                                                         std::int64_t bits, std::int64_t group_size, bool sym,
                                                         const std::string& format,
                                                         std::optional<at::ScalarType> scale_dtype,
                                                         const std::string& layer);
std::tuple<at::Tensor, at::Tensor> unpack_meta(const at::Tensor& qweight, const at::Tensor& qzeros, std::int64_t bits,
                                               std::int64_t group_size, const std::string& format,
                                               const std::string& layer);
at::Tensor dequantize_meta(const at::Tensor& qweight, const at::Tensor& qzeros, const at::Tensor& scales,
                           const at::Tensor& g_idx, std::int64_t bits, std::int64_t group_size, bool desc_act,
                           const std::string& format, const std::string& layer);
at::Tensor marlin_repack_meta(const at::Tensor& qweight, const std::optional<at::Tensor>& perm, std::int64_t size_k,
                              std::int64_t size_n, const std::string& layer);
at::Tensor marlin_gemm_meta(const at::Tensor& x, const at::Tensor& b, const at::Tensor& s,
                            const std::optional<at::Tensor>& perm, const std::optional<at::Tensor>& bias,
                            std::int64_t size_k, std::int64_t size_n, std::int64_t group_size, bool check_finite,
                            const std::string& layer);

// The names of the fields of gptq_quantize's `summary` tensor (float64), in order.
inline constexpr const char* kGptqSummaryFields[] = {"damp_initial", "damp_final", "attempts", "float64_retry",
                                                      "dead_columns", "min_pivot", "loss"};

}  // namespace qh::ops
