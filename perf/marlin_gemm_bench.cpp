// marlin/gemm/M/K/N/group/bf16: the Marlin fp16/bf16 x int4 GEMM (impl/marlin/gemm), and cublas/gemm/M/K/N/bf16:
// cuBLAS on the same shape and dtype (at::matmul on a dense weight), both with the timing helper (perf/measure.h).
// cuBLAS runs first as its own benchmark (its own entry: a near-memory-bound reference point at small M for the
// cross-GPU model) and its median is reused for the Marlin cases' vs_cublas (measured there when filtered out).
// Work: bytes (weights + scales + A read, C written) and flops (2MNK); counters as perf/counters.h lists them.
// Shapes: issue 7's Llama projections at M = 1, 16, 64, 256, 1024.
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>

#include <map>
#include <tuple>

#include "impl/marlin/gemm.h"
#include "perf/counters.h"

namespace {

using qh::perf::kCuda;

using Shape = std::tuple<std::int64_t, std::int64_t, std::int64_t, bool>;  // M, K, N, bf16
std::map<Shape, qh::perf::Measurement>& cublas_times() {
  static std::map<Shape, qh::perf::Measurement> times;
  return times;
}

void BM_CublasGemm(benchmark::State& state) {
  if (!qh::perf::require_gpu(state)) return;
  const std::int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const bool bf16 = state.range(3) != 0;
  const auto options = at::TensorOptions().dtype(bf16 ? at::kBFloat16 : at::kHalf).device(kCuda);
  const at::Tensor x = at::randn({m, k}, options), dense = at::randn({k, n}, options);
  const auto t = qh::perf::run(state, [&] { at::matmul(x, dense); });
  cublas_times()[{m, k, n, bf16}] = t;
  qh::perf::report(state, t, {2.0 * double(k * n + m * k + m * n), 2.0 * double(m) * double(n) * double(k)});
}

void BM_MarlinGemm(benchmark::State& state) {
  if (!qh::perf::require_gpu(state)) return;
  const std::int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const int group = int(state.range(3));
  const at::ScalarType dtype = state.range(4) != 0 ? at::kBFloat16 : at::kHalf;
  const auto options = at::TensorOptions().dtype(dtype).device(kCuda);

  qh::marlin::MarlinWeights w;
  w.spec = qh::marlin::MarlinSpec{k, n, group, false};
  // Any int32 is a valid word of 8 codes; scales small enough that no output overflows.
  w.b = at::randint(-(1LL << 31), 1LL << 31, {w.spec.k_padded() / 16, 2 * w.spec.n_padded()},
                    at::TensorOptions().dtype(at::kLong).device(kCuda)).to(at::kInt);
  w.s = (at::rand({w.spec.groups(), w.spec.n_padded()}, options) * 0.01).contiguous();
  const at::Tensor x = at::randn({m, k}, options);
  const at::Tensor dense = at::randn({k, n}, options);  // cuBLAS's operand: the same shape, dense

  const qh::marlin::GemmOptions unchecked{.check_finite = false};
  const auto ours = qh::perf::run(state, [&] { qh::marlin::gemm(x, w, "bench", unchecked); });
  const auto cached = cublas_times().find({m, k, n, dtype == at::kBFloat16});
  qh::perf::Measurement cublas;
  try {
    cublas = cached != cublas_times().end() ? cached->second : qh::perf::measure([&] { at::matmul(x, dense); });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const double bytes = double(w.b.nbytes() + w.s.nbytes() + x.nbytes()) + 2.0 * double(m * n);
  qh::perf::report(state, ours, {bytes, 2.0 * double(m) * double(n) * double(k)}, &cublas);
}

constexpr std::pair<std::int64_t, std::int64_t> kShapes[] = {{4096, 4096}, {4096, 11008}, {11008, 4096},
                                                             {8192, 8192}, {8192, 28672}, {28672, 8192}};
constexpr std::int64_t kRows[] = {1, 16, 64, 256, 1024};

void gemm_shapes(benchmark::internal::Benchmark* b) {
  for (int bf16 : {0, 1}) {
    for (int group : {128, -1}) {
      if (bf16 && group == -1) continue;  // per-channel: fp16 only, to keep the run short
      for (auto [k, n] : kShapes) {
        for (std::int64_t m : kRows) b->Args({m, k, n, group, bf16});
      }
    }
  }
}

void cublas_shapes(benchmark::internal::Benchmark* b) {
  for (int bf16 : {0, 1}) {
    for (auto [k, n] : kShapes) {
      for (std::int64_t m : kRows) b->Args({m, k, n, bf16});
    }
  }
}

BENCHMARK(BM_CublasGemm)->Name("cublas/gemm")->ArgNames({"M", "K", "N", "bf16"})
    ->Apply(cublas_shapes)->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MarlinGemm)->Name("marlin/gemm")->ArgNames({"M", "K", "N", "group", "bf16"})
    ->Apply(gemm_shapes)->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);

}  // namespace
