#include "perf/probes.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "impl/core/errors.h"
#include "kernels/kernels.h"
#include "perf/measure.h"

namespace qh::perf {

namespace {

void check(cudaError_t err, const std::string& probe) {
  if (err != cudaSuccess) {
    throw MeasurementError({}, "the " + probe + " probe failed", "cudaSuccess",
                           std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")");
  }
}

// Probes need a steady figure more than a quick one.
Policy probe_policy() {
  Policy p;
  p.min_samples = 10;
  p.target_noise = 0.005;
  p.budget_s = 2.0;
  return p;
}

double median_seconds(const std::function<void()>& call, std::vector<double>* clocks) {
  const Measurement m = measure(call, probe_policy());
  clocks->insert(clocks->end(), m.sm_mhz.begin(), m.sm_mhz.end());
  return m.time.median;
}

void check_bound(const char* probe, double value, double bound, const char* unit) {
  if (!std::isfinite(value) || value <= 0) {
    throw MeasurementError({}, std::string("the ") + probe + " probe gave no usable figure", std::string("a positive ") + unit,
                           std::to_string(value));
  }
  if (bound > 0 && value > 1.1 * bound) {
    throw MeasurementError({}, std::string("the ") + probe + " probe exceeds what the device can do (a timing error)",
                           "at most 1.1 x " + std::to_string(bound) + " " + unit, std::to_string(value) + " " + unit);
  }
}

Probes measure_probes() {
  int device = 0;
  check(cudaGetDevice(&device), "device");
  kernels::DeviceInfo info;
  check(kernels::device_info(device, &info), "device properties");
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const auto bytes_opts = at::TensorOptions().dtype(at::kByte).device(at::kCUDA, device);
  Probes p;
  std::vector<double> clocks;

  // The copy limit is the faster of our 16-byte copy kernel and the driver's device-to-device memcpy at each size
  // (on an H100 the memcpy engine path is a few per cent ahead at 1 GiB).
  const at::Tensor src = at::empty({1LL << 30}, bytes_opts), dst = at::empty_like(src);
  for (std::int64_t size = 1LL << 20; size <= (1LL << 30); size *= 4) {
    const double kernel_s = median_seconds(
        [&] { check(kernels::launch_probe_copy(src.data_ptr(), dst.data_ptr(), size, info.sm_count, stream), "copy"); },
        &clocks);
    const double memcpy_s = median_seconds(
        [&] { check(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), size, cudaMemcpyDeviceToDevice, stream), "copy"); },
        &clocks);
    p.copy_curve.emplace_back(2.0 * double(size), std::min(kernel_s, memcpy_s));
  }
  p.dram_copy_gbs = p.copy_curve.back().first / p.copy_curve.back().second / 1e9;

  const std::int64_t l2_buf = std::int64_t(info.l2_bytes / 4) / 16 * 16;
  const at::Tensor sink =
      at::empty({std::int64_t(kernels::probe_read_sink_count(info.sm_count))}, bytes_opts.dtype(at::kInt));
  auto reads = [&](int passes) {
    return median_seconds([&] {
      check(kernels::launch_probe_read(src.data_ptr(), l2_buf, passes, static_cast<unsigned*>(sink.data_ptr()),
                                       info.sm_count, stream), "L2 read");
    }, &clocks);
  };
  constexpr int kPasses = 200;
  p.l2_gbs = double(l2_buf) * kPasses / (reads(2 * kPasses) - reads(kPasses)) / 1e9;

  const int blocks = info.sm_count * 8;
  auto alu = [&](int steps) {
    return median_seconds([&] {
      check(kernels::launch_probe_int_alu(blocks, steps, static_cast<unsigned*>(sink.data_ptr()), stream), "integer ALU");
    }, &clocks);
  };
  constexpr int kSteps = 2048;
  p.alu_int_tops = double(kernels::probe_int_alu_ops(blocks, kSteps)) / (alu(2 * kSteps) - alu(kSteps)) / 1e12;

  for (const std::int64_t n : {4096, 8192}) {
    const at::Tensor a = at::randn({n, n}, at::TensorOptions().dtype(at::kHalf).device(at::kCUDA, device));
    const at::Tensor b = at::randn({n, n}, a.options());
    const double tflops = 2.0 * double(n * n * n) / median_seconds([&] { at::matmul(a, b); }, &clocks) / 1e12;
    p.tc_fp16_tflops = std::max(p.tc_fp16_tflops, tflops);
  }
  p.launch_us = median_seconds([&] { check(kernels::launch_probe_empty(stream), "launch"); }, &clocks) * 1e6;
  p.sm_clock_mhz = stats_of(clocks).median;

  const double clock_hz = info.sm_clock_khz * 1e3;
  const DeviceBounds bounds{2.0 * info.mem_clock_khz * 1e3 * info.mem_bus_bits / 8 / 1e9,
                            4096.0 * info.sm_count * clock_hz / 1e12, 128.0 * info.sm_count * clock_hz / 1e12};
  validate(p, bounds);
  p.tc_bound_tflops = bounds.tc_tflops;
  return p;
}

}  // namespace

void validate(const Probes& p, const DeviceBounds& bounds) {
  check_bound("DRAM copy", p.dram_copy_gbs, bounds.dram_gbs, "GB/s");
  check_bound("L2 read", p.l2_gbs, 0, "GB/s");
  if (p.l2_gbs < p.dram_copy_gbs) {
    throw MeasurementError({}, "the L2 read probe is slower than the DRAM copy (its buffer did not stay in L2)",
                           "more than " + std::to_string(p.dram_copy_gbs) + " GB/s", std::to_string(p.l2_gbs) + " GB/s");
  }
  check_bound("tensor-core fp16 GEMM", p.tc_fp16_tflops, bounds.tc_tflops, "TFLOP/s");
  check_bound("integer ALU", p.alu_int_tops, bounds.alu_tops, "Tops/s");
  check_bound("launch latency", p.launch_us, 0, "us");
  if (p.launch_us > 1000) {
    throw MeasurementError({}, "the launch latency probe is implausibly slow (is another process using the GPU?)",
                           "below 1000 us", std::to_string(p.launch_us) + " us");
  }
}

const Probes& probes() {
  static const Probes p = [] {
    std::fprintf(stderr, "qharness: probing the GPU (copy, L2, tensor cores, integer ALU, launch) ...\n");
    Probes measured = measure_probes();
    std::fprintf(stderr, "qharness: copy %.0f GB/s, L2 %.0f GB/s, fp16 TC %.0f TFLOP/s, int ALU %.1f Tops/s, launch %.1f us, SM %.0f MHz\n",
                 measured.dram_copy_gbs, measured.l2_gbs, measured.tc_fp16_tflops, measured.alu_int_tops,
                 measured.launch_us, measured.sm_clock_mhz);
    return measured;
  }();
  return p;
}

nlohmann::ordered_json to_json(const Probes& p) {
  nlohmann::ordered_json curve = nlohmann::ordered_json::array();
  for (const auto& [bytes, seconds] : p.copy_curve) curve.push_back({{"bytes", bytes}, {"seconds", seconds}});
  return {{"dram_copy_gbs", p.dram_copy_gbs}, {"l2_gbs", p.l2_gbs},     {"tc_fp16_tflops", p.tc_fp16_tflops},
          {"alu_int_tops", p.alu_int_tops},   {"launch_us", p.launch_us}, {"sm_clock_mhz", p.sm_clock_mhz},
          {"tc_bound_tflops", p.tc_bound_tflops}, {"copy_curve", curve}, {"l2_flush", kL2Flush}};
}

}  // namespace qh::perf
