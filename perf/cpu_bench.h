// CPU benchmark bodies. Wall time comes from Google Benchmark's own loop; for CI, instruction counts come from
// callgrind (perf/cpu_instructions.py), which are repeatable on a noisy machine where times are not. Under valgrind
// the first call of cpu_benchmark() also runs `work` kCallgrindReps times inside qh_callgrind_region(), the one
// function whose instructions callgrind collects (--toggle-collect), so setup and the benchmark framework stay out
// of the count and instructions per call = count / kCallgrindReps exactly.
#pragma once

#include <benchmark/benchmark.h>

#include <functional>

namespace qh::perf {

inline constexpr int kCallgrindReps = 5;

void cpu_benchmark(benchmark::State& state, const std::function<void()>& work);

}  // namespace qh::perf
