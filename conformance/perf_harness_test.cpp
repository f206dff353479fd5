// The perf harness's own guarantees (perf/): robust statistics in closed form, probes that are impossible or failed
// stop the run (the failure behind issue 8: CI perf numbers normalized by a figure nobody checked), the samples
// reach the JSON under the right benchmark, and on a GPU the probes and the timing helper agree with each other and the
// helper's L2 flush evicts what a timed call read.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "conformance/gpu_testing.h"
#include "impl/core/errors.h"
#include "kernels/kernels.h"
#include "perf/bench_context.h"
#include "perf/measure.h"
#include "perf/probes.h"

namespace {

using qh::perf::Probes;

TEST(PerfStats, QuartilesNoiseAndCvInClosedForm) {
  // 1..9 shuffled: linear-interpolated quartiles at positions 2, 4, 6 of the sorted values are 3, 5, 7.
  const auto s = qh::perf::stats_of({9, 1, 8, 2, 7, 3, 6, 4, 5});
  EXPECT_DOUBLE_EQ(s.median, 5);
  EXPECT_DOUBLE_EQ(s.q1, 3);
  EXPECT_DOUBLE_EQ(s.q3, 7);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 9);
  EXPECT_DOUBLE_EQ(s.noise, 4 / 1.349 / 5);
  EXPECT_DOUBLE_EQ(s.cv, std::sqrt(7.5) / 5);  // sample variance of 1..9 is 7.5
  EXPECT_DOUBLE_EQ(qh::perf::stats_of({}).median, 0);
}

// H100-like figures and bounds (the bounds as probes.cpp derives them from the device's reported properties).
Probes plausible() {
  Probes p;
  p.dram_copy_gbs = 3000;
  p.l2_gbs = 9000;
  p.tc_fp16_tflops = 760;
  p.alu_int_tops = 30;
  p.launch_us = 3;
  return p;
}
const qh::perf::DeviceBounds kBounds{3350, 1070, 33};

TEST(PerfProbes, PlausibleFiguresPass) { EXPECT_NO_THROW(qh::perf::validate(plausible(), kBounds)); }

TEST(PerfProbes, ImpossibleOrFailedFiguresStopTheRunNamingTheProbe) {
  struct Case {
    const char* name;
    void (*mutate)(Probes&);
    const char* named;
  };
  const Case cases[] = {
      {"NaN copy", [](Probes& p) { p.dram_copy_gbs = std::numeric_limits<double>::quiet_NaN(); }, "DRAM copy"},
      {"copy above the bus", [](Probes& p) { p.dram_copy_gbs = 3350 * 1.2; p.l2_gbs = 1e5; }, "DRAM copy"},
      {"zero tensor-core rate", [](Probes& p) { p.tc_fp16_tflops = 0; }, "tensor-core"},
      {"tensor cores above peak", [](Probes& p) { p.tc_fp16_tflops = 1070 * 1.2; }, "tensor-core"},
      {"L2 slower than DRAM", [](Probes& p) { p.l2_gbs = 2000; }, "L2 read"},
      {"ALU negative", [](Probes& p) { p.alu_int_tops = -1; }, "integer ALU"},
      {"launch of 2 ms", [](Probes& p) { p.launch_us = 2000; }, "launch latency"},
  };
  for (const Case& c : cases) {
    Probes p = plausible();
    c.mutate(p);
    try {
      qh::perf::validate(p, kBounds);
      ADD_FAILURE() << c.name << ": accepted";
    } catch (const qh::MeasurementError& e) {
      EXPECT_NE(std::string(e.what()).find(c.named), std::string::npos) << c.name << ": " << e.what();
    }
  }
}

TEST(PerfContext, SamplesAreFiledUnderTheirBenchmarkAndFlaggedEntriesListed) {
  using nlohmann::ordered_json;
  const ordered_json doc = {{"context", {{"date", "today"}}},
                            {"benchmarks",
                             {{{"name", "a"}, {"sample_id", 1.0}, {"measurement_error", 0.0}},
                              {{"name", "b"}, {"sample_id", 0.0}, {"measurement_error", 1.0}},
                              {{"name", "cpu"}, {"real_time", 5.0}}}}};
  const ordered_json samples = {{{"seconds", {2.0}}}, {{"seconds", {1.0}}}};
  const ordered_json out = qh::perf::with_qharness_context(doc, {{"schema_version", 1}}, samples);
  const ordered_json& qh = out["context"]["qharness"];
  EXPECT_EQ(qh["samples"]["a"]["seconds"][0], 1.0);
  EXPECT_EQ(qh["samples"]["b"]["seconds"][0], 2.0);
  EXPECT_FALSE(qh["samples"].contains("cpu"));
  EXPECT_EQ(qh["measurement_errors"], ordered_json::array({"b"}));
  EXPECT_EQ(qh["schema_version"], 1);
  EXPECT_EQ(out["context"]["date"], "today");
  for (const auto& b : out["benchmarks"]) EXPECT_FALSE(b.contains("sample_id")) << b.dump();
}

// On a GPU: the probes passed their bounds (probes() validates), the copy curve rises with size, and the timing
// helper measuring the probe's two 1 GiB copies (our kernel, the driver's memcpy) reproduces the probe: the faster
// of the two within 5 % of it, the other no faster than it (both are medians of samples whose spread is ~1 % here;
// on an H100 our kernel runs ~6 % below the memcpy path, so each alone gets a looser floor of 0.85).
TEST(GpuPerfProbes, ProbesAreConsistentWithTheTimingHelper) {
  QH_REQUIRE_CUDA();
  const Probes& p = qh::perf::probes();
  ASSERT_EQ(p.copy_curve.size(), 6u);
  for (std::size_t i = 1; i < p.copy_curve.size(); ++i) {
    EXPECT_GT(p.copy_curve[i].second, p.copy_curve[i - 1].second) << "copy of " << p.copy_curve[i].first << " bytes";
  }
  EXPECT_GT(p.l2_gbs, p.dram_copy_gbs);
  EXPECT_GT(p.tc_bound_tflops, p.tc_fp16_tflops);
  const at::Tensor src = at::empty({1LL << 30}, at::TensorOptions().dtype(at::kByte).device(at::kCUDA));
  at::Tensor dst = at::empty_like(src);
  qh::kernels::DeviceInfo info;
  ASSERT_EQ(qh::kernels::device_info(0, &info), cudaSuccess);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const double bytes = 2.0 * double(src.numel());
  const auto kernel = qh::perf::measure([&] {
    qh::kernels::launch_probe_copy(src.data_ptr(), dst.data_ptr(), src.numel(), info.sm_count, stream);
  });
  const auto memcpy = qh::perf::measure([&] {
    cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), src.numel(), cudaMemcpyDeviceToDevice, stream);
  });
  const double kernel_ratio = bytes / kernel.time.median / 1e9 / p.dram_copy_gbs;
  const double memcpy_ratio = bytes / memcpy.time.median / 1e9 / p.dram_copy_gbs;
  EXPECT_NEAR(std::max(kernel_ratio, memcpy_ratio), 1.0, 0.05) << kernel_ratio << " " << memcpy_ratio;
  for (double r : {kernel_ratio, memcpy_ratio}) {
    EXPECT_GT(r, 0.85);
    EXPECT_LT(r, 1.05);
  }
  EXPECT_EQ(kernel.throttled + memcpy.throttled, 0) << "SM clock below 0.75 of its maximum during a copy";
}

// On a GPU: the timing helper's L2 flush (kL2Flush) evicts what the timed call touched before. A single read of a
// quarter of L2 (the L2 probe's buffer size, resident when warm) is timed by measure() and, warm, right after a read
// of the same buffer. Flushed, its bytes come from DRAM; warm, from L2, which the probes put at ~2x the DRAM copy
// bandwidth on an H100/H200. Both are timed behind a kernel already running (measure() queues the flush, the warm
// loop a 20 us clock read), so neither includes the host's launch call (on an H200 a warm read timed on an idle GPU
// took 9.2 us, more than the flushed one's 7.6 us). Each still includes the ~2.8 us ramp of a single launch, which
// narrows the ratio: on an H200 15.7 MB took 7.65 us flushed against 5.44 us warm (1.41x; three runs above 1.3).
// A flush that leaves the buffer in L2 gives ~1.0x; 1.2 separates the two with room for the ramp's variation.
TEST(GpuPerfProbes, TheL2FlushEvictsWhatTheTimedCallRead) {
  QH_REQUIRE_CUDA();
  qh::kernels::DeviceInfo info;
  ASSERT_EQ(qh::kernels::device_info(0, &info), cudaSuccess);
  const std::int64_t bytes = std::int64_t(info.l2_bytes / 4) / 16 * 16;
  const auto opts = at::TensorOptions().dtype(at::kByte).device(at::kCUDA);
  const at::Tensor buf = at::zeros({bytes}, opts);
  at::Tensor sink = at::empty({std::int64_t(qh::kernels::probe_read_sink_count(info.sm_count))}, opts.dtype(at::kInt));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const auto read = [&] {
    qh::kernels::launch_probe_read(buf.data_ptr(), bytes, 1, static_cast<unsigned*>(sink.data_ptr()), info.sm_count,
                                   stream);
  };
  const double flushed = qh::perf::measure(read).time.median;

  cudaEvent_t start{}, stop{};
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);
  at::Tensor clock = at::empty({2}, opts.dtype(at::kLong));
  std::vector<double> warm;
  for (int i = 0; i < 50; ++i) {
    read();  // brings the buffer into L2
    // Keeps the GPU busy while the host queues the timed read behind it.
    qh::kernels::launch_probe_sm_clock(20'000, static_cast<unsigned long long*>(clock.data_ptr()), stream);
    cudaEventRecord(start, stream);
    read();
    cudaEventRecord(stop, stream);
    ASSERT_EQ(cudaEventSynchronize(stop), cudaSuccess);
    float ms = 0;
    ASSERT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaSuccess);
    warm.push_back(ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const double warm_median = qh::perf::stats_of(warm).median;
  RecordProperty("flushed_us", std::to_string(flushed * 1e6));
  RecordProperty("warm_us", std::to_string(warm_median * 1e6));
  EXPECT_GT(flushed / warm_median, 1.2) << "flushed " << flushed * 1e6 << " us, warm " << warm_median * 1e6
                                        << " us for a read of " << bytes << " bytes";
}

}  // namespace
