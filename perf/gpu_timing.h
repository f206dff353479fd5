// What the GPU benchmarks share until the perf harness (probes, guarded timing) replaces it: CUDA-event timing of
// one call after L2 is flushed, a device-to-device copy probe and a cuBLAS fp16 GEMM probe measured in the same
// process, and the common counters.
#pragma once

#include <benchmark/benchmark.h>

#include <functional>
#include <vector>

#include <c10/core/Device.h>

namespace qh::perf {

inline const c10::Device kCuda(c10::kCUDA, 0);

// False (and the benchmark skipped with the reason) when no CUDA device can be used.
bool require_gpu(benchmark::State& state);
// Seconds of `call` on the current stream, timed with CUDA events after writing a buffer larger than L2.
double timed(const std::function<void()>& call);
// Median of `reps` timed calls.
double median_time(const std::function<void()>& call, int reps);
double median(std::vector<double> values);
// Device-to-device copy of 1 GiB: bytes read + written per second, in GB/s (the DRAM limit).
double copy_gbs();
// cuBLAS fp16 GEMM at 8192^3: TFLOP/s (the tensor-core limit).
double tc_fp16_tflops();
// Times `call` once per benchmark iteration (manual time) and returns the median in seconds.
double run_timed(benchmark::State& state, const std::function<void()>& call);
// Counters for a benchmark that moves `bytes` per call in a median of `seconds`: bytes, GBps, bw_fraction (of the
// copy probe), copy_GBps_probe, us_median.
void report_bytes(benchmark::State& state, double bytes, double seconds);

}  // namespace qh::perf
