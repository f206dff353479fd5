// The `context.qharness` block every perf/ binary adds to Google Benchmark's JSON (docs/benchmarks.md): the tool
// and environment blocks of results.json, the measurement policy, whatever the binary's hooks add (GPU binaries:
// the probes, measured before the first benchmark, and each measurement's samples). bench_main.cpp is the main()
// that writes it; this part is separate so tests can link it without a second main().
#pragma once

#include <nlohmann/json.hpp>

namespace qh::perf {

// What a binary adds to context.qharness. `before` runs before the benchmarks (a throw stops the run with its
// message and exit code 2: no figures are normalized by a failed probe); `after` returns the sample records by id
// (an array), which are filed under each benchmark's name through the entry's `sample_id` counter.
struct ContextHooks {
  nlohmann::ordered_json (*before)() = nullptr;
  nlohmann::ordered_json (*after)() = nullptr;
};
// Called from a static initializer of the binary's own sources (perf/gpu_context.cpp); returns true.
bool set_context_hooks(ContextHooks hooks);
const ContextHooks& context_hooks();

// Google Benchmark's JSON `doc` with context.qharness = `qh` plus `samples` (record `sample_id` of each entry, under
// the entry's name; the sample_id counter is dropped) and `measurement_errors` (names of entries whose
// measurement_error counter is set).
nlohmann::ordered_json with_qharness_context(nlohmann::ordered_json doc, nlohmann::ordered_json qh,
                                             const nlohmann::ordered_json& samples);

}  // namespace qh::perf
