// GPTQ (issue 4 targets): on the GPU, Hessian accumulation and H -> Q for the optimized path, its preparation
// (damping + factorization) on its own so the column loop + trailing updates come out by difference, and the
// plain-torch per-column loop (the reference run on CUDA tensors) as the same-GPU baseline; on the CPU, the
// reference itself (float64) on a smaller layer, timed by Google Benchmark's wall clock. Work: flops (and for the
// Hessian the activation bytes read); peak GPU memory of the call as a counter. Layers: 4096x4096 and out 4096 x
// in 11008, group 128, act-order off/on.
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include "impl/gptq/hessian.h"
#include "impl/gptq/prepare.h"
#include "impl/gptq/reference.h"
#include "perf/counters.h"

namespace {

using qh::gptq::GptqConfig;
using qh::perf::kCuda;

struct Layer {
  at::Tensor w, h;
};

// A layer with a realistic Hessian: H = 2/n X^T X of 8192 calibration tokens of correlated activations.
Layer make_layer(std::int64_t n, std::int64_t k, c10::Device device, at::ScalarType dtype) {
  at::manual_seed(0);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  const at::Tensor x = at::randn({8192, k}, opts).matmul(at::randn({k, k}, opts) / std::sqrt(double(k)) +
                                                         at::eye(k, opts));
  return {at::randn({n, k}, opts), 2.0 / 8192 * x.t().matmul(x)};
}

GptqConfig config_for(benchmark::State& state) {
  GptqConfig cfg;
  cfg.group_size = 128;
  cfg.desc_act = state.range(2) != 0;
  return cfg;
}

// Whole-layer calls take milliseconds to seconds: fewer samples, a longer budget.
qh::perf::Policy layer_policy(int min_samples) {
  qh::perf::Policy p = qh::perf::default_policy();
  p.min_samples = min_samples;
  p.warmup_calls = 1;
  p.budget_s = std::max(p.budget_s, 3.0);
  return p;
}

void time_layer(benchmark::State& state, const qh::perf::Policy& policy, qh::perf::Work work,
                const std::function<void()>& call) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
  const auto m = qh::perf::run(state, call, policy);
  qh::perf::report(state, m, work);
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  state.counters["peak_gpu_mib"] = double(stats.allocated_bytes[0].peak) / (1 << 20);
}

// H -> Q FLOPs: the trailing updates (N x K^2 multiply-adds over the upper triangle = N K^2) dominate.
double gptq_flops(std::int64_t n, std::int64_t k) { return double(n) * double(k) * double(k); }

void BM_GptqOptimized(benchmark::State& state) {
  if (!qh::perf::require_gpu(state)) return;
  const Layer l = make_layer(state.range(0), state.range(1), kCuda, at::kFloat);
  const GptqConfig cfg = config_for(state);
  time_layer(state, layer_policy(5), {0, gptq_flops(state.range(0), state.range(1))},
             [&] { benchmark::DoNotOptimize(qh::gptq::gptq_optimized(l.w, l.h, cfg, "layer")); });
}

void BM_GptqPrepare(benchmark::State& state) {
  if (!qh::perf::require_gpu(state)) return;
  const Layer l = make_layer(state.range(0), state.range(1), kCuda, at::kFloat);
  const GptqConfig cfg = config_for(state);
  // The factorization's flops: Cholesky K^3/3, inverse K^3, Cholesky of the inverse K^3/3.
  const double k = double(state.range(1));
  time_layer(state, layer_policy(5), {0, 5.0 / 3.0 * k * k * k}, [&] {
    auto p = qh::gptq::prepare_layer(l.w, l.h, cfg, "layer", -1, kCuda, at::kFloat);
    benchmark::DoNotOptimize(p.hinv);
  });
}

void BM_GptqPlainTorchPerColumn(benchmark::State& state) {
  if (!qh::perf::require_gpu(state)) return;
  const Layer l = make_layer(state.range(0), state.range(1), kCuda, at::kFloat);
  const GptqConfig cfg = config_for(state);
  time_layer(state, layer_policy(1), {0, gptq_flops(state.range(0), state.range(1))},
             [&] { benchmark::DoNotOptimize(qh::gptq::gptq_reference(l.w, l.h, cfg, "layer", -1, kCuda)); });
}

// The CPU reference (float64), wall time: what `qharness quantize --device cpu` costs per layer.
void BM_GptqReferenceCpu(benchmark::State& state) {
  const Layer l = make_layer(state.range(0), state.range(1), c10::Device(c10::kCPU), at::kDouble);
  const GptqConfig cfg = config_for(state);
  for (auto _ : state) benchmark::DoNotOptimize(qh::gptq::gptq_reference(l.w, l.h, cfg, "layer"));
  state.counters["flops"] = gptq_flops(state.range(0), state.range(1));
  state.counters["GFLOPs"] = benchmark::Counter(gptq_flops(state.range(0), state.range(1)) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_HessianAccumulate(benchmark::State& state) {
  if (!qh::perf::require_gpu(state)) return;
  const std::int64_t k = state.range(0), batches = 128, seq = 2048;
  const bool exact64 = state.range(1) != 0;
  at::manual_seed(0);
  const at::Tensor x = at::randn({8, seq, k}, at::TensorOptions().dtype(at::kHalf).device(kCuda));
  const double tokens = double(batches * seq);
  time_layer(state, layer_policy(3), {tokens * double(k) * 2.0, 2.0 * tokens * double(k) * double(k)}, [&] {
    qh::gptq::HessianAccumulator acc(k, "layer", exact64 ? at::kDouble : at::kFloat, kCuda);
    for (std::int64_t b = 0; b < batches; b += 8) acc.add_batch(x);
    benchmark::DoNotOptimize(acc.hessian());
  });
}

void layer_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"out", "in", "act_order"});
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{4096, 4096}, {4096, 11008}}) {
    for (int act : {0, 1}) b->Args({n, k, act});
  }
  b->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_GptqOptimized)->Name("gptq/optimized")->Apply(layer_args);
BENCHMARK(BM_GptqPrepare)->Name("gptq/prepare")->Apply(layer_args);
BENCHMARK(BM_GptqPlainTorchPerColumn)->Name("gptq/plain_torch_per_column")->Apply(layer_args);
BENCHMARK(BM_GptqReferenceCpu)
    ->Name("gptq/reference_cpu")
    ->ArgNames({"out", "in", "act_order"})
    ->Args({512, 1024, 0})->Args({512, 1024, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HessianAccumulate)
    ->Name("gptq/hessian")
    ->ArgNames({"in", "fp64"})
    ->Args({4096, 0})->Args({11008, 0})->Args({4096, 1})
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
