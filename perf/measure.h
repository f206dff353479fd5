// The one timing helper of the GPU benchmarks (STYLE.md: measurement policy in one place). measure() times a call
// with CUDA events on the current stream, one call per sample, each after L2 is flushed (kL2Flush: a read of twice
// the L2 size) so no sample reads what the previous one left in L2; after each sample a short kernel reads the SM
// clock, and a sample taken below `throttle_fraction` of the maximum SM clock is dropped and counted (nvbench's
// rule). It stops once the relative noise of the samples is below `target_noise` (after `min_samples`), or when
// `budget_s` of wall time is spent, or at `max_samples`.
#pragma once

#include <benchmark/benchmark.h>

#include "perf/policy.h"

#include <functional>
#include <string>
#include <vector>

namespace qh::perf {

// How L2 is flushed before every sample (probes, counters and benchmarks alike), as the JSON records it: times taken
// with another flush do not compare (qh_report's gate refuses such a pair). A read leaves L2 full of clean lines;
// the earlier flush, a write of 2 x L2 (cudaMemsetAsync, as nvbench flushes), left it full of dirty ones, which the
// timed call then wrote back as it read: up to L2 size / DRAM bandwidth of extra time (H100, M = 1 on 8192 x 28672:
// 61 us against 50; the repack 93 against 86; the copy probe 3.01 against 3.04 TB/s; an H200 hid most of it).
inline constexpr const char* kL2Flush = "read of 2 x L2 through L2 before every sample";

// Robust statistics of a set of samples.
struct Stats {
  double median = 0, q1 = 0, q3 = 0, min = 0, max = 0;
  double noise = 0;  // (q3 - q1) / 1.349 / median: the relative standard deviation of a normal sample
  double cv = 0;     // standard deviation / mean
};
Stats stats_of(std::vector<double> values);

struct Measurement {
  std::vector<double> seconds;  // kept samples, in order
  std::vector<double> sm_mhz;   // the SM clock read after each kept sample
  int throttled = 0;            // samples dropped for a low clock
  bool converged = false;       // stopped on the noise target, not on the budget or the sample cap
  Stats time;
  double wall_s = 0;
};

// False (and the benchmark skipped with the reason) when no CUDA device can be used.
bool require_gpu(benchmark::State& state);

// Times `call` under `policy`. Throws qh::Error when every sample was throttled or a CUDA call failed.
Measurement measure(const std::function<void()>& call, const Policy& policy = default_policy());

// The samples of every measurement taken in this process, by id; bench_main writes them into the JSON's
// context.qharness.samples under the benchmark's name (the entry's sample_id counter says which).
struct SampleRecord {
  std::vector<double> seconds, sm_mhz;
  int throttled = 0;
  bool converged = false;
};
const std::vector<SampleRecord>& sample_log();
int log_samples(const Measurement& m);

}  // namespace qh::perf
