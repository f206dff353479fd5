// safetensors header parse + validation: what every checkpoint open pays before touching a tensor (large models
// have thousands of tensors). Reports header bytes per second.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "impl/format/safetensors.h"
#include "perf/cpu_bench.h"

namespace {

using qh::format::Dtype;

// A header shaped like a GPTQ checkpoint: per layer qweight/qzeros/scales/g_idx/bias names.
std::vector<std::byte> checkpoint_like(int tensors) {
  std::vector<qh::format::TensorData> data;
  static const std::vector<std::byte> word(4);
  for (int i = 0; i < tensors; ++i) {
    data.push_back({"model.layers." + std::to_string(i / 5) + ".self_attn.q_proj.part" + std::to_string(i % 5),
                    Dtype::I32, {1}, word});
  }
  return qh::format::serialize(std::move(data), {{"format", "pt"}});
}

void BM_ParseHeader(benchmark::State& state) {
  const auto bytes = checkpoint_like(int(state.range(0)));
  const auto header_bytes = qh::format::parse_header(bytes, bytes.size(), "bench").data_start;
  qh::perf::cpu_benchmark(state, [&] {
    auto header = qh::format::parse_header(bytes, bytes.size(), "bench");
    benchmark::DoNotOptimize(header);
  });
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(header_bytes));
  state.counters["tensors"] = double(state.range(0));
}

BENCHMARK(BM_ParseHeader)->Name("safetensors/parse_header")->ArgName("tensors")->Arg(16)->Arg(1024)->Arg(16384);

}  // namespace
