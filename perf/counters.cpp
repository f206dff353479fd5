#include "perf/counters.h"

#include <algorithm>

#include "perf/probes.h"

namespace qh::perf {

Measurement run(benchmark::State& state, const std::function<void()>& call, const Policy& policy) {
  Measurement m;
  if (state.max_iterations != 1) {  // Google Benchmark would repeat the whole sampled measurement
    state.SkipWithError("register GPU benchmarks with ->Iterations(1): measure() does its own sampling");
    return m;
  }
  for (auto _ : state) {
    try {
      m = measure(call, policy);
    } catch (const std::exception& e) {  // throttled throughout, a CUDA error: the benchmark fails, with the reason
      state.SkipWithError(e.what());
      break;
    }
    state.SetIterationTime(m.time.median);
  }
  return m;
}

void report(benchmark::State& state, const Measurement& m, const Work& work, const Measurement* cublas) {
  if (state.error_occurred() || m.seconds.empty()) return;
  const Probes& p = probes();
  const double t = m.time.median;
  auto& c = state.counters;
  c["sample_id"] = log_samples(m);
  c["us_median"] = t * 1e6;
  c["us_q1"] = m.time.q1 * 1e6;
  c["us_q3"] = m.time.q3 * 1e6;
  c["noise"] = m.time.noise;
  c["cv"] = m.time.cv;
  c["samples"] = double(m.seconds.size());
  c["throttled"] = m.throttled;
  c["converged"] = m.converged ? 1 : 0;
  c["sm_mhz"] = stats_of(m.sm_mhz).median;
  bool impossible = false;
  if (work.bytes > 0) {
    const double gbs = work.bytes / t / 1e9;
    c["bytes"] = work.bytes;
    c["GBps"] = gbs;
    c["bw_fraction"] = gbs / p.dram_copy_gbs;
    impossible |= gbs > 1.05 * p.dram_copy_gbs;
    state.SetBytesProcessed(std::int64_t(work.bytes) * state.iterations());
  }
  if (work.flops > 0) {
    const double tflops = work.flops / t / 1e12;
    c["flops"] = work.flops;
    c["TFLOPs"] = tflops;
    c["tc_fraction"] = tflops / p.tc_fp16_tflops;
    impossible |= p.tc_bound_tflops > 0 && tflops > 1.05 * p.tc_bound_tflops;
  }
  const double floor_s = std::max(work.bytes / (p.dram_copy_gbs * 1e9), work.flops / (p.tc_fp16_tflops * 1e12));
  if (floor_s > 0) c["roofline_efficiency"] = floor_s / t;
  if (cublas != nullptr) {
    c["cublas_us"] = cublas->time.median * 1e6;
    c["vs_cublas"] = cublas->time.median / t;
  }
  c["measurement_error"] = impossible ? 1 : 0;
  if (impossible) state.SetLabel("MEASUREMENT ERROR: above the probed limit");
}

}  // namespace qh::perf
