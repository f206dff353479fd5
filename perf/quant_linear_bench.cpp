// GPTQ dequantization and GPTQ -> Marlin repack on the GPU, memory-bound kernels: timed per call with CUDA events
// with the timing helper (perf/measure.h); work: bytes read + written.
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>

#include "impl/marlin/repack.h"
#include "impl/quant_linear/dequantize.h"
#include "perf/counters.h"

namespace {

using qh::perf::kCuda;

// gptq/dequant/<bits>/<K>x<N>: qweight + qzeros + fp16 scales + g_idx -> fp16 W (K, N).
void BM_GptqDequant(benchmark::State& state) {
  if (!qh::perf::require_gpu(state)) return;
  const std::int64_t bits = state.range(0), k = state.range(1), n = state.range(2);
  const qh::quant_linear::QuantSpec spec{k, n, int(bits), 128, true, false, qh::quant_linear::ZeroFormat::V1};
  const auto ints = at::TensorOptions().dtype(at::kInt).device(kCuda);
  const qh::quant_linear::PackedWeights p{
      at::randint(-(1 << 30), 1 << 30, {spec.qweight_rows(), n}, ints),
      at::full({spec.groups(), spec.qzeros_cols()}, 0x77777777, ints),
      at::rand({spec.groups(), n}, at::TensorOptions().dtype(at::kHalf).device(kCuda)),
      at::arange(k, ints).div(128, "floor").to(at::kInt)};
  const auto m = qh::perf::run(state, [&] { qh::quant_linear::dequantize_weights(p, spec); });
  qh::perf::report(
      state, m, {double(p.qweight.nbytes() + p.qzeros.nbytes() + p.scales.nbytes() + p.g_idx.nbytes()) + 2.0 * double(k * n)});
}

// marlin/repack/<K>x<N>[/act]: GPTQ 4-bit qweight -> Marlin B, optionally gathering rows by an act-order perm.
void BM_MarlinRepack(benchmark::State& state) {
  if (!qh::perf::require_gpu(state)) return;
  const std::int64_t k = state.range(0), n = state.range(1);
  const bool act = state.range(2) != 0;
  const at::Tensor qweight = at::randint(-(1 << 30), 1 << 30, {k / 8, n}, at::TensorOptions().dtype(at::kInt).device(kCuda));
  const at::Tensor perm = act ? at::randperm(k, at::TensorOptions().dtype(at::kInt).device(kCuda)) : at::Tensor();
  const auto m = qh::perf::run(state, [&] { qh::marlin::repack_gptq_qweight(qweight, perm, k, n, "b"); });
  qh::perf::report(state, m, {2.0 * double(qweight.nbytes()) + (act ? double(k) * 4 : 0.0)});
}

void shapes(benchmark::internal::Benchmark* b, bool with_bits) {
  const std::pair<std::int64_t, std::int64_t> kn[] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {8192, 28672}, {28672, 8192}};
  for (auto [k, n] : kn) {
    if (with_bits) {
      for (int bits : {4, 8}) b->Args({bits, k, n});
    } else {
      for (int act : {0, 1}) b->Args({k, n, act});
    }
  }
}

BENCHMARK(BM_GptqDequant)->Name("gptq/dequant")->ArgNames({"bits", "K", "N"})
    ->Apply([](auto* b) { shapes(b, true); })->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MarlinRepack)->Name("marlin/repack")->ArgNames({"K", "N", "act"})
    ->Apply([](auto* b) { shapes(b, false); })->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);

}  // namespace
