#include "kernels/kernels.h"

namespace qh::kernels {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return n;
}

std::string cuda_unavailable_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  }
  return n == 0 ? "no CUDA device present" : "";
}

cudaError_t device_info(int device, DeviceInfo* out) {
  cudaDeviceProp prop{};
  if (cudaError_t err = cudaGetDeviceProperties(&prop, device); err != cudaSuccess) return err;
  out->name = prop.name;
  out->cc_major = prop.major;
  out->cc_minor = prop.minor;
  out->sm_count = prop.multiProcessorCount;
  out->memory_bytes = prop.totalGlobalMem;
  out->l2_bytes = std::uint64_t(prop.l2CacheSize);
  out->mem_bus_bits = prop.memoryBusWidth;
  // CUDA 13 removed the clock fields from cudaDeviceProp; the attributes remain.
  if (cudaError_t err = cudaDeviceGetAttribute(&out->sm_clock_khz, cudaDevAttrClockRate, device); err != cudaSuccess)
    return err;
  if (cudaError_t err = cudaDeviceGetAttribute(&out->mem_clock_khz, cudaDevAttrMemoryClockRate, device);
      err != cudaSuccess)
    return err;
  if (cudaError_t err = cudaDriverGetVersion(&out->driver_version); err != cudaSuccess) return err;
  return cudaRuntimeGetVersion(&out->runtime_version);
}

}  // namespace qh::kernels
