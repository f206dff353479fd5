// marlin/gemm/<dtype>/g<group>/<M>x<K>x<N>: the Marlin fp16/bf16 x int4 GEMM (impl/marlin/gemm) against cuBLAS on the
// same shape and dtype (at::matmul on a dense weight of that shape), both with the timing helper (perf/measure.h).
// Work: bytes (B + s + A read, C written) and flops (2MNK); counters as perf/counters.h lists them, vs_cublas
// included. Shapes: issue 7's Llama projections at M = 1, 16, 64, 256, 1024.
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>

#include "impl/marlin/gemm.h"
#include "perf/counters.h"

namespace {

using qh::perf::kCuda;

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
  const auto cublas = qh::perf::measure([&] { at::matmul(x, dense); });
  const double bytes = double(w.b.nbytes() + w.s.nbytes() + x.nbytes()) + 2.0 * double(m * n);
  qh::perf::report(state, ours, {bytes, 2.0 * double(m) * double(n) * double(k)}, &cublas);
}

void gemm_shapes(benchmark::internal::Benchmark* b) {
  const std::pair<std::int64_t, std::int64_t> kn[] = {{4096, 4096}, {4096, 11008}, {11008, 4096},
                                                      {8192, 8192}, {8192, 28672}, {28672, 8192}};
  for (int bf16 : {0, 1}) {
    for (int group : {128, -1}) {
      if (bf16 && group == -1) continue;  // per-channel: fp16 only, to keep the run short
      for (auto [k, n] : kn) {
        for (std::int64_t m : {1, 16, 64, 256, 1024}) b->Args({m, k, n, group, bf16});
      }
    }
  }
}

BENCHMARK(BM_MarlinGemm)->Name("marlin/gemm")->ArgNames({"M", "K", "N", "group", "bf16"})
    ->Apply(gemm_shapes)->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);

}  // namespace
