// The GPU binaries' part of context.qharness (perf/bench_context.h): the probes before the first benchmark (skipped,
// with the reason, when no CUDA device is usable) and the samples of every measurement afterwards.
#include "kernels/kernels.h"
#include "perf/bench_context.h"
#include "perf/measure.h"
#include "perf/probes.h"

namespace {

nlohmann::ordered_json before() {
  if (qh::kernels::cuda_device_count() == 0) {
    return {{"probes", nullptr}, {"probes_skipped", qh::kernels::cuda_unavailable_reason()}};
  }
  return {{"probes", qh::perf::to_json(qh::perf::probes())}};
}

nlohmann::ordered_json after() {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& r : qh::perf::sample_log()) {
    out.push_back({{"seconds", r.seconds}, {"sm_mhz", r.sm_mhz}, {"throttled", r.throttled}, {"converged", r.converged}});
  }
  return out;
}

const bool registered = qh::perf::set_context_hooks({before, after});

}  // namespace
