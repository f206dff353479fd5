// Runs a GPU benchmark's measurement and reports it in Google Benchmark's terms (STYLE.md: benchmarks describe
// work, bytes and flops; the counters come from one place). Counters (docs/benchmarks.md):
//   bytes, flops                 the work of one call, as the benchmark declares it
//   us_median, us_q1, us_q3, noise, cv, samples, throttled, converged, sm_mhz
//   GBps, bw_fraction            bytes / time, and that over the DRAM copy probe
//   TFLOPs, tc_fraction          flops / time, and that over the tensor-core probe (a sustained cuBLAS rate, which
//                                a shorter GEMM can exceed a little: the fraction may pass 1)
//   roofline_efficiency          max(bytes / copy probe, flops / tensor-core probe) / time
//   vs_cublas, cublas_us         (when a cuBLAS time is given) cuBLAS's median / ours
//   measurement_error            1 when GB/s exceeds the copy probe, or TFLOP/s the device's tensor-core bound, by
//                                more than 5 %: not a win but a broken measurement (L2 not flushed, a lost
//                                synchronization); the label says so and bench_main lists it
#pragma once

#include <benchmark/benchmark.h>
#include <c10/core/Device.h>

#include <functional>

#include "perf/measure.h"

namespace qh::perf {

inline const c10::Device kCuda(c10::kCUDA, 0);

struct Work {
  double bytes = 0;
  double flops = 0;
};

// One Google Benchmark iteration whose time (manual time) is the median of measure(call, policy). Register the
// benchmark with ->UseManualTime()->Iterations(1); any other iteration count skips it with that message. A
// measurement that throws (every sample throttled, a CUDA error) fails the benchmark with its message; report()
// then adds nothing.
Measurement run(benchmark::State& state, const std::function<void()>& call, const Policy& policy = default_policy());

void report(benchmark::State& state, const Measurement& m, const Work& work, const Measurement* cublas = nullptr);

}  // namespace qh::perf
