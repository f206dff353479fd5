#include "perf/gpu_timing.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>

#include "kernels/kernels.h"

namespace qh::perf {

bool require_gpu(benchmark::State& state) {
  if (kernels::cuda_device_count() > 0) return true;
  state.SkipWithError(kernels::cuda_unavailable_reason().c_str());
  return false;
}

double timed(const std::function<void()>& call) {
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

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n == 0 ? 0.0 : n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

double median_time(const std::function<void()>& call, int reps) {
  call();  // warm-up: handles, module load
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) times.push_back(timed(call));
  return median(times);
}

double copy_gbs() {
  static const double gbs = [] {
    const at::Tensor a = at::empty({1LL << 30}, at::TensorOptions().dtype(at::kByte).device(kCuda));
    at::Tensor b = at::empty_like(a);
    return 2.0 * double(a.numel()) / median_time([&] { b.copy_(a); }, 10) / 1e9;
  }();
  return gbs;
}

double tc_fp16_tflops() {
  static const double tflops = [] {
    constexpr std::int64_t n = 8192;
    const at::Tensor a = at::randn({n, n}, at::TensorOptions().dtype(at::kHalf).device(kCuda));
    const at::Tensor b = at::randn({n, n}, a.options());
    return 2.0 * double(n * n * n) / median_time([&] { at::matmul(a, b); }, 10) / 1e12;
  }();
  return tflops;
}

double run_timed(benchmark::State& state, const std::function<void()>& call) {
  call();  // warm-up
  std::vector<double> times;
  for (auto _ : state) {
    times.push_back(timed(call));
    state.SetIterationTime(times.back());
  }
  return median(times);
}

void report_bytes(benchmark::State& state, double bytes, double seconds) {
  state.SetBytesProcessed(std::int64_t(bytes) * state.iterations());
  const double gbs = bytes / seconds / 1e9;
  state.counters["bytes"] = bytes;
  state.counters["GBps"] = gbs;
  state.counters["bw_fraction"] = gbs / copy_gbs();
  state.counters["copy_GBps_probe"] = copy_gbs();
  state.counters["us_median"] = seconds * 1e6;
}

}  // namespace qh::perf
