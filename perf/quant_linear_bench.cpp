// GPTQ dequantization and GPTQ -> Marlin repack on the GPU: the two memory-bound kernels of issues 5 and 6.
// Each rep is timed with CUDA events around the kernel alone, after writing a buffer larger than L2 so the inputs
// come from DRAM; counters: bytes (read + written), GB/s, and bw_fraction against a device-to-device copy
// probed in the same process (the full probe set and the guarded timing helper come with the perf harness issue).
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "impl/marlin/repack.h"
#include "impl/quant_linear/dequantize.h"
#include "kernels/kernels.h"

namespace {

const c10::Device kCuda(c10::kCUDA, 0);

bool require_gpu(benchmark::State& state) {
  if (qh::kernels::cuda_device_count() > 0) return true;
  state.SkipWithError(qh::kernels::cuda_unavailable_reason().c_str());
  return false;
}

// Times `call` with CUDA events after flushing L2 (a write of 2x its size); returns seconds.
template <class F>
double timed(F&& call) {
  static at::Tensor flush = at::empty({512LL << 20}, at::TensorOptions().dtype(at::kByte).device(kCuda));
  flush.fill_(1);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(0);
  cudaEventRecord(start, stream);
  call();
  cudaEventRecord(stop, stream);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / 1e3;
}

// Device-to-device copy bandwidth (bytes read + written per second) of a 1 GiB buffer: the DRAM limit here.
double copy_gbs() {
  static const double gbs = [] {
    const at::Tensor a = at::empty({1LL << 30}, at::TensorOptions().dtype(at::kByte).device(kCuda));
    at::Tensor b = at::empty_like(a);
    b.copy_(a);
    double best = 1e9;
    for (int i = 0; i < 10; ++i) best = std::min(best, timed([&] { b.copy_(a); }));
    return 2.0 * double(a.numel()) / best / 1e9;
  }();
  return gbs;
}

void report(benchmark::State& state, double bytes) {
  state.SetBytesProcessed(std::int64_t(bytes) * state.iterations());
  state.counters["bytes"] = bytes;
  state.counters["GBps"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["copy_GBps_probe"] = copy_gbs();
}

// gptq/dequant/<bits>/<K>x<N>: qweight + qzeros + fp16 scales + g_idx -> fp16 W (K, N).
void BM_GptqDequant(benchmark::State& state) {
  if (!require_gpu(state)) return;
  const std::int64_t bits = state.range(0), k = state.range(1), n = state.range(2);
  const qh::quant_linear::QuantSpec spec{k, n, int(bits), 128, true, false, qh::quant_linear::ZeroFormat::V1};
  const auto ints = at::TensorOptions().dtype(at::kInt).device(kCuda);
  const qh::quant_linear::PackedWeights p{
      at::randint(-(1 << 30), 1 << 30, {spec.qweight_rows(), n}, ints),
      at::full({spec.groups(), spec.qzeros_cols()}, 0x77777777, ints),
      at::rand({spec.groups(), n}, at::TensorOptions().dtype(at::kHalf).device(kCuda)),
      at::arange(k, ints).div(128, "floor").to(at::kInt)};
  for (auto _ : state) state.SetIterationTime(timed([&] { qh::quant_linear::dequantize_weights(p, spec); }));
  report(state, double(p.qweight.nbytes() + p.qzeros.nbytes() + p.scales.nbytes() + p.g_idx.nbytes()) +
                    2.0 * double(k * n));
}

// marlin/repack/<K>x<N>[/act]: GPTQ 4-bit qweight -> Marlin B, optionally gathering rows by an act-order perm.
void BM_MarlinRepack(benchmark::State& state) {
  if (!require_gpu(state)) return;
  const std::int64_t k = state.range(0), n = state.range(1);
  const bool act = state.range(2) != 0;
  const at::Tensor qweight = at::randint(-(1 << 30), 1 << 30, {k / 8, n}, at::TensorOptions().dtype(at::kInt).device(kCuda));
  const at::Tensor perm = act ? at::randperm(k, at::TensorOptions().dtype(at::kInt).device(kCuda)) : at::Tensor();
  for (auto _ : state) state.SetIterationTime(timed([&] { qh::marlin::repack_gptq_qweight(qweight, perm, k, n, "b"); }));
  report(state, 2.0 * double(qweight.nbytes()) + (act ? double(k) * 4 : 0.0));
}

void shapes(benchmark::internal::Benchmark* b, bool with_bits) {
  const std::pair<std::int64_t, std::int64_t> kn[] = {{4096, 4096}, {4096, 11008}, {11008, 4096}, {8192, 28672}};
  for (auto [k, n] : kn) {
    if (with_bits) {
      for (int bits : {4, 8}) b->Args({bits, k, n});
    } else {
      for (int act : {0, 1}) b->Args({k, n, act});
    }
  }
}

BENCHMARK(BM_GptqDequant)->Name("gptq/dequant")->ArgNames({"bits", "K", "N"})
    ->Apply([](auto* b) { shapes(b, true); })->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MarlinRepack)->Name("marlin/repack")->ArgNames({"K", "N", "act"})
    ->Apply([](auto* b) { shapes(b, false); })->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
