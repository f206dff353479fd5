// marlin/gemm/<dtype>/g<group>/<M>x<K>x<N>: the Marlin fp16/bf16 x int4 GEMM (impl/marlin/gemm) against cuBLAS on the
// same shape and dtype (at::matmul with the dequantized weight), both timed per call with CUDA events after an L2
// flush. Counters: bytes (B + s + A read, C written), flops (2MNK), GB/s, TFLOP/s, bw_fraction (of the copy probe),
// tc_fraction (of the cuBLAS 8192^3 probe), roofline_efficiency (the time the two probed limits allow over ours),
// vs_cublas (cuBLAS time over ours) and cublas_us. Shapes: issue 7's Llama projections at M = 1, 16, 64, 256, 1024.
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>

#include <algorithm>

#include "impl/marlin/gemm.h"
#include "perf/gpu_timing.h"

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
  const double ours = qh::perf::run_timed(state, [&] { qh::marlin::gemm(x, w, "bench", unchecked); });
  const double cublas = qh::perf::median_time([&] { at::matmul(x, dense); }, 20);

  const double bytes = double(w.b.nbytes() + w.s.nbytes() + x.nbytes()) + 2.0 * double(m * n);
  const double flops = 2.0 * double(m) * double(n) * double(k);
  qh::perf::report_bytes(state, bytes, ours);
  const double floor_s = std::max(bytes / (qh::perf::copy_gbs() * 1e9), flops / (qh::perf::tc_fp16_tflops() * 1e12));
  state.counters["flops"] = flops;
  state.counters["TFLOPs"] = flops / ours / 1e12;
  state.counters["tc_fraction"] = flops / ours / 1e12 / qh::perf::tc_fp16_tflops();
  state.counters["roofline_efficiency"] = floor_s / ours;
  state.counters["cublas_us"] = cublas * 1e6;
  state.counters["vs_cublas"] = cublas / ours;
  state.counters["tc_TFLOPs_probe"] = qh::perf::tc_fp16_tflops();
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
    ->Apply(gemm_shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
