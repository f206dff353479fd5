// The benchmark main every perf/ binary links (bench_main.cpp): Google Benchmark's flags and JSON, plus a
// `context.qharness` block (docs/benchmarks.md): the tool and environment blocks of results.json, whatever the
// binary's hooks add (GPU binaries: the probes, measured before the first benchmark, and each measurement's
// samples), and the measurement policy. The JSON file (--benchmark_out=PATH, format json) is written atomically.
#pragma once

#include <nlohmann/json.hpp>

namespace qh::perf {

// What a binary adds to context.qharness. `before` runs before the benchmarks (a throw stops the run with its
// message and exit code 2: no figures are normalized by a failed probe); `after` returns the sample records by id
// (an array), which the main files under each benchmark's name through the entry's `sample_id` counter.
struct ContextHooks {
  nlohmann::ordered_json (*before)() = nullptr;
  nlohmann::ordered_json (*after)() = nullptr;
};
// Called from a static initializer of the binary's own sources (perf/gpu_context.cpp); returns true.
bool set_context_hooks(ContextHooks hooks);

}  // namespace qh::perf
