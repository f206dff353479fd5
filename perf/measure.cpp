#include "perf/measure.h"

#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "impl/core/errors.h"
#include "kernels/kernels.h"

namespace qh::perf {

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw MeasurementError({}, std::string("CUDA call failed while timing: ") + what, "cudaSuccess",
                           std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")");
  }
}

// What every measurement shares: the L2 flush buffer, the clock readout and the device's maximum SM clock.
struct Timer {
  void* flush = nullptr;
  std::size_t flush_bytes = 0;
  unsigned* flush_sink = nullptr;  // the read probe's never-taken output
  int sm_count = 0;
  unsigned long long* clock = nullptr;  // device: cycles, ns
  double max_sm_mhz = 0;
  cudaEvent_t start{}, stop{};

  Timer() {
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    kernels::DeviceInfo info;
    check(kernels::device_info(device, &info), "device_info");
    max_sm_mhz = info.sm_clock_khz / 1e3;
    sm_count = info.sm_count;
    flush_bytes = std::max<std::size_t>(2 * info.l2_bytes, 64u << 20);
    check(cudaMalloc(&flush, flush_bytes), "cudaMalloc (L2 flush buffer)");
    check(cudaMemset(flush, 0, flush_bytes), "cudaMemset (L2 flush buffer)");  // read initialized memory only
    check(cudaMalloc(&flush_sink, kernels::probe_read_sink_count(sm_count) * sizeof(unsigned)),
          "cudaMalloc (L2 flush sink)");
    check(cudaMalloc(&clock, 2 * sizeof(unsigned long long)), "cudaMalloc (clock readout)");
    check(cudaEventCreate(&start), "cudaEventCreate");
    check(cudaEventCreate(&stop), "cudaEventCreate");
  }
  // Lives until exit; the CUDA context may be gone by then, so nothing is freed.
  static Timer& get() {
    static Timer* timer = new Timer;
    return *timer;
  }

  // One sample: flush (kL2Flush: what the last sample left in L2 is written back, if dirty, and gives way to clean
  // lines of the flush buffer), time the call, then read the SM clock over 20 us (outside the timed region).
  std::pair<double, double> sample(const std::function<void()>& call, cudaStream_t stream) {
    check(kernels::launch_probe_read(flush, flush_bytes, 1, flush_sink, sm_count, stream), "L2 flush (read)");
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    call();
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(kernels::launch_probe_sm_clock(20'000, clock, stream), "SM clock kernel");
    unsigned long long host[2] = {0, 0};
    check(cudaMemcpyAsync(host, clock, sizeof host, cudaMemcpyDeviceToHost, stream), "clock readout");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    const double mhz = host[1] > 0 ? double(host[0]) / double(host[1]) * 1e3 : 0.0;
    return {ms / 1e3, mhz};
  }
};

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * double(sorted.size() - 1);
  const std::size_t lo = std::size_t(pos);
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - double(lo)) * (sorted[hi] - sorted[lo]);
}

std::vector<SampleRecord>& mutable_log() {
  static std::vector<SampleRecord> log;
  return log;
}

}  // namespace

Stats stats_of(std::vector<double> values) {
  Stats s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.median = quantile(values, 0.5);
  s.q1 = quantile(values, 0.25);
  s.q3 = quantile(values, 0.75);
  s.min = values.front();
  s.max = values.back();
  s.noise = s.median > 0 ? (s.q3 - s.q1) / 1.349 / s.median : 0;
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / double(values.size());
  double var = 0;
  for (double v : values) var += (v - mean) * (v - mean);
  s.cv = values.size() > 1 && mean > 0 ? std::sqrt(var / double(values.size() - 1)) / mean : 0;
  return s;
}

bool require_gpu(benchmark::State& state) {
  if (kernels::cuda_device_count() > 0) return true;
  state.SkipWithError(kernels::cuda_unavailable_reason().c_str());
  return false;
}

Measurement measure(const std::function<void()>& call, const Policy& policy) {
  Timer& timer = Timer::get();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  for (int i = 0; i < policy.warmup_calls; ++i) call();
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (warm-up)");

  Measurement m;
  const auto t0 = std::chrono::steady_clock::now();
  const double min_mhz = policy.throttle_fraction * timer.max_sm_mhz;
  while (true) {
    const auto [seconds, mhz] = timer.sample(call, stream);
    if (mhz < min_mhz) {
      ++m.throttled;
    } else {
      m.seconds.push_back(seconds);
      m.sm_mhz.push_back(mhz);
    }
    m.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int n = int(m.seconds.size());
    if (n >= policy.min_samples && stats_of(m.seconds).noise <= policy.target_noise) {
      m.converged = true;
      break;
    }
    if (n + m.throttled >= policy.max_samples) break;
    if (m.wall_s >= policy.budget_s && n + m.throttled >= std::min(policy.min_samples, 3)) break;
  }
  if (m.seconds.empty()) {
    throw MeasurementError({}, "every timing sample ran below the throttle threshold of the SM clock",
                           "an SM clock >= " + std::to_string(int(min_mhz)) + " MHz (" +
                               std::to_string(policy.throttle_fraction) + " of the maximum)",
                           std::to_string(m.throttled) + " throttled samples");
  }
  m.time = stats_of(m.seconds);
  return m;
}

const std::vector<SampleRecord>& sample_log() { return mutable_log(); }

int log_samples(const Measurement& m) {
  mutable_log().push_back({m.seconds, m.sm_mhz, m.throttled, m.converged});
  return int(mutable_log().size()) - 1;
}

}  // namespace qh::perf
