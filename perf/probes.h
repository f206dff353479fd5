// Probes of the limits a kernel can hit, measured in the benchmark process before the benchmarks (DESIGN.md,
// GPU-normalized performance), with the timing helper's policy (perf/measure.h):
//   dram_copy_gbs   a 1 GiB device copy, bytes read + written per second (the faster of kernels/probes.cu's copy
//                   kernel and cudaMemcpyAsync device-to-device)
//   copy_curve      the same copy at 1 MiB .. 1 GiB: seconds per size, for models of size-dependent efficiency
//   l2_gbs          repeated L1-bypassing reads of a buffer of a quarter of L2: (t(2P passes) - t(P)) / (P x bytes)
//   tc_fp16_tflops  cuBLAS fp16 GEMM, the faster of 4096^3 and 8192^3 (through at::matmul; random data: the
//                   largest GEMM can run power-limited, one H100 run gave 663 TFLOP/s at 8192^3 while cuBLAS
//                   reached 800 at M = 1024)
//   alu_int_tops    the dequantization instruction mix (LOP3, SHF, PRMT), 10^12 instructions per second, also by
//                   difference of two lengths so the launch drops out
//   launch_us       an empty kernel timed with events: the least any timed call can cost
// Each figure is checked against what the device can possibly do (its datasheet-free bounds from the reported
// clocks, bus width and SM count); a failed or impossible probe throws MeasurementError, and the harness stops.
#pragma once

#include <nlohmann/json.hpp>

#include <utility>
#include <vector>

namespace qh::perf {

struct Probes {
  double dram_copy_gbs = 0;
  double l2_gbs = 0;
  double tc_fp16_tflops = 0;
  double alu_int_tops = 0;
  double launch_us = 0;
  double sm_clock_mhz = 0;  // median SM clock read during the probes
  double tc_bound_tflops = 0;  // DeviceBounds::tc_tflops: a figure above it is a broken measurement
  std::vector<std::pair<double, double>> copy_curve;  // (bytes moved = 2 x size, seconds)
};

// Measured once per process on first use; throws MeasurementError.
const Probes& probes();
nlohmann::ordered_json to_json(const Probes& p);

// Upper bounds the probes are checked against, from the device's reported properties.
struct DeviceBounds {
  double dram_gbs = 0;      // 2 (DDR) x memory clock x bus width
  double tc_tflops = 0;     // 4096 fp16 flops per SM per clock (Hopper dense; Ampere does 2048) x SMs x max clock
  double alu_tops = 0;      // 128 integer lanes per SM per clock x SMs x max clock
};
// Throws MeasurementError naming the probe when a figure is not finite, not positive, or above its bound x 1.1
// (the slack covers clocks reported below the boost the GPU reaches).
void validate(const Probes& p, const DeviceBounds& bounds);

}  // namespace qh::perf
