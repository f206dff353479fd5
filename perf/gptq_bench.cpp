// GPTQ on the GPU (issue 4 targets): Hessian accumulation and H -> Q for the optimized path, its preparation
// (damping + factorization) on its own so the column loop + trailing updates come out by difference, and the
// plain-torch per-column loop (the reference run on CUDA tensors) as the same-GPU baseline. Counters: flops,
// TFLOP/s, peak GPU memory of the call. Layers: 4096x4096 and out 4096 x in 11008, group 128, act-order off/on.
// Times are host wall-clock around calls that end synchronized (each returns a loss read back from the GPU).
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include <chrono>

#include "impl/gptq/hessian.h"
#include "impl/gptq/prepare.h"
#include "impl/gptq/reference.h"
#include "kernels/kernels.h"

namespace {

using qh::gptq::GptqConfig;

const c10::Device kCuda(c10::kCUDA, 0);

bool require_gpu(benchmark::State& state) {
  if (qh::kernels::cuda_device_count() > 0) return true;
  state.SkipWithError(qh::kernels::cuda_unavailable_reason().c_str());
  return false;
}

struct Layer {
  at::Tensor w, h;
};

// A layer with a realistic Hessian: H = 2/n X^T X of 8192 calibration tokens of correlated activations.
Layer make_layer(std::int64_t n, std::int64_t k) {
  at::manual_seed(0);
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(kCuda);
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

template <class F>
void time_calls(benchmark::State& state, double flops, F&& call) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  state.counters["peak_gpu_mib"] = double(stats.allocated_bytes[0].peak) / (1 << 20);
  state.counters["flops"] = flops;
  state.counters["TFLOP/s"] = benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

// H -> Q FLOPs: the trailing updates (N x K^2 multiply-adds over the upper triangle = N K^2) dominate.
double gptq_flops(std::int64_t n, std::int64_t k) { return double(n) * double(k) * double(k); }

void BM_GptqOptimized(benchmark::State& state) {
  if (!require_gpu(state)) return;
  const Layer l = make_layer(state.range(0), state.range(1));
  const GptqConfig cfg = config_for(state);
  qh::gptq::gptq_optimized(l.w, l.h, cfg, "warmup");
  time_calls(state, gptq_flops(state.range(0), state.range(1)),
             [&] { benchmark::DoNotOptimize(qh::gptq::gptq_optimized(l.w, l.h, cfg, "layer")); });
}

void BM_GptqPrepare(benchmark::State& state) {
  if (!require_gpu(state)) return;
  const Layer l = make_layer(state.range(0), state.range(1));
  const GptqConfig cfg = config_for(state);
  time_calls(state, 0, [&] {
    auto p = qh::gptq::prepare_layer(l.w, l.h, cfg, "layer", -1, kCuda, at::kFloat);
    benchmark::DoNotOptimize(p.hinv.sum().item<float>());
  });
}

void BM_GptqPlainTorchPerColumn(benchmark::State& state) {
  if (!require_gpu(state)) return;
  const Layer l = make_layer(state.range(0), state.range(1));
  const GptqConfig cfg = config_for(state);
  time_calls(state, gptq_flops(state.range(0), state.range(1)), [&] {
    benchmark::DoNotOptimize(qh::gptq::gptq_reference(l.w, l.h, cfg, "layer", -1, kCuda));
  });
}

void BM_HessianAccumulate(benchmark::State& state) {
  if (!require_gpu(state)) return;
  const std::int64_t k = state.range(0), batches = 128, seq = 2048;
  const bool exact64 = state.range(1) != 0;
  at::manual_seed(0);
  const at::Tensor x = at::randn({8, seq, k}, at::TensorOptions().dtype(at::kHalf).device(kCuda));
  time_calls(state, 2.0 * double(batches * seq) * double(k) * double(k), [&] {
    qh::gptq::HessianAccumulator acc(k, "layer", exact64 ? at::kDouble : at::kFloat, kCuda);
    for (std::int64_t b = 0; b < batches; b += 8) acc.add_batch(x);
    benchmark::DoNotOptimize(acc.hessian().sum().item<double>());
  });
}

void layer_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"out", "in", "act_order"});
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{4096, 4096}, {4096, 11008}}) {
    for (int act : {0, 1}) b->Args({n, k, act});
  }
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_GptqOptimized)->Name("gptq/optimized")->Apply(layer_args)->Iterations(5);
BENCHMARK(BM_GptqPrepare)->Name("gptq/prepare")->Apply(layer_args)->Iterations(5);
BENCHMARK(BM_GptqPlainTorchPerColumn)->Name("gptq/plain_torch_per_column")->Apply(layer_args)->Iterations(1);
BENCHMARK(BM_HessianAccumulate)
    ->Name("gptq/hessian")
    ->ArgNames({"in", "fp64"})
    ->Args({4096, 0})->Args({11008, 0})->Args({4096, 1})
    ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
