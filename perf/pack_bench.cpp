// GPTQ bit packing on the CPU (impl/format/gptq_pack.h, torch-free): codes -> qweight words and back, at 2, 3, 4 and
// 8 bits, on a Llama projection. Reports the bytes of codes in + words out (pack) or words in + codes out (unpack).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "impl/format/gptq_pack.h"
#include "perf/cpu_bench.h"

namespace {

std::vector<std::uint8_t> random_codes(std::int64_t count, int bits) {
  std::mt19937 rng(0);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(count));
  for (auto& c : codes) c = std::uint8_t(rng() & ((1u << bits) - 1));
  return codes;
}

void BM_PackQweight(benchmark::State& state) {
  const int bits = int(state.range(0));
  const std::int64_t k = state.range(1), n = state.range(2);
  const auto codes = random_codes(k * n, bits);
  qh::perf::cpu_benchmark(state, [&] { benchmark::DoNotOptimize(qh::format::pack_qweight(codes, k, n, bits)); });
  state.SetBytesProcessed(state.iterations() * (k * n + k * n * bits / 8));
}

void BM_UnpackQweight(benchmark::State& state) {
  const int bits = int(state.range(0));
  const std::int64_t k = state.range(1), n = state.range(2);
  const auto words = qh::format::pack_qweight(random_codes(k * n, bits), k, n, bits);
  qh::perf::cpu_benchmark(state, [&] { benchmark::DoNotOptimize(qh::format::unpack_qweight(words, k, n, bits)); });
  state.SetBytesProcessed(state.iterations() * (k * n + k * n * bits / 8));
}

void pack_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"bits", "K", "N"});
  for (int bits : {2, 3, 4, 8}) b->Args({bits, 4096, 4096});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_PackQweight)->Name("gptq/pack")->Apply(pack_shapes);
BENCHMARK(BM_UnpackQweight)->Name("gptq/unpack")->Apply(pack_shapes);

}  // namespace
