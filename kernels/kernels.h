// The CUDA side of qharness, torch-free and C++17 (nvcc): launchers take raw device pointers, sizes and a
// cudaStream_t and return the CUDA error of the launch; impl/ validates tensors before calling them. Device queries
// never throw and work on a machine with no driver (they report why no device is usable).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace qh::kernels {

// Number of usable CUDA devices; 0 when there is no driver or no device.
int cuda_device_count();
// Why cuda_device_count() is 0, in words ("CUDA driver not found: ..."); empty when a device is usable.
std::string cuda_unavailable_reason();

struct DeviceInfo {
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  std::uint64_t memory_bytes = 0;
  std::uint64_t l2_bytes = 0;
  int sm_clock_khz = 0;   // maximum SM clock
  int mem_clock_khz = 0;  // maximum memory clock
  int mem_bus_bits = 0;
  int driver_version = 0;   // e.g. 13000 for 13.0
  int runtime_version = 0;
};
// Properties of device `device`; cudaSuccess or the error that stopped the query.
cudaError_t device_info(int device, DeviceInfo* out);

// Position-weighted byte checksum: sum = sum of b[i], weighted = sum of (i + 1) * b[i], both mod 2^64. Swapping,
// dropping or changing any byte changes it, and it reduces in parallel, so a host computation and a device one
// over the same bytes must agree exactly.
struct ByteChecksum {
  std::uint64_t sum = 0;
  std::uint64_t weighted = 0;
  bool operator==(const ByteChecksum& o) const { return sum == o.sum && weighted == o.weighted; }
};
ByteChecksum byte_checksum_host(const std::uint8_t* data, std::uint64_t n);
// Device version over `n` bytes at device pointer `data`; `result` is a device pointer to 2 uint64 (sum,
// weighted), overwritten. Asynchronous on `stream`.
cudaError_t launch_byte_checksum(const std::uint8_t* data, std::uint64_t n, std::uint64_t* result,
                                 cudaStream_t stream);

}  // namespace qh::kernels
