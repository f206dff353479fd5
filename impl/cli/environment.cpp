#include "impl/cli/environment.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#ifdef QH_WITH_CUDA
#include "kernels/kernels.h"
#endif

namespace qh::cli {

namespace {

using nlohmann::ordered_json;

// First line printed by `command`, or "" when it fails.
std::string first_line_of(const std::string& command) {
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::array<char, 256> buf{};
  std::string line;
  if (std::fgets(buf.data(), int(buf.size()), pipe) != nullptr) line = buf.data();
  const int rc = ::pclose(pipe);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return rc == 0 ? line : "";
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

ordered_json gpus_and_cuda(ordered_json& cuda) {
  ordered_json gpus = ordered_json::array();
#ifdef QH_WITH_CUDA
  const int n = qh::kernels::cuda_device_count();
  cuda = {{"built_with", true}, {"devices", n}};
  if (n == 0) cuda["unavailable"] = qh::kernels::cuda_unavailable_reason();
  for (int d = 0; d < n; ++d) {
    qh::kernels::DeviceInfo info;
    if (qh::kernels::device_info(d, &info) != cudaSuccess) continue;
    cuda["runtime"] = version_text(info.runtime_version);
    cuda["driver"] = version_text(info.driver_version);
    gpus.push_back({{"name", info.name},
                    {"compute_capability", std::to_string(info.cc_major) + "." + std::to_string(info.cc_minor)},
                    {"sm_count", info.sm_count},
                    {"memory", info.memory_bytes},
                    {"l2_bytes", info.l2_bytes},
                    {"clocks", {{"sm_max_mhz", info.sm_clock_khz / 1000}, {"mem_max_mhz", info.mem_clock_khz / 1000}}},
                    {"driver", version_text(info.driver_version)}});
  }
#else
  cuda = {{"built_with", false}, {"devices", 0}, {"unavailable", "built with QH_CUDA=OFF"}};
#endif
  return gpus;
}

}  // namespace

bool gpu_present() {
#ifdef QH_WITH_CUDA
  return qh::kernels::cuda_device_count() > 0;
#else
  return false;
#endif
}

ordered_json tool_block() {
  std::string commit = first_line_of("git -C '" QH_SOURCE_DIR "' rev-parse HEAD 2>/dev/null");
  if (commit.empty()) commit = "unknown";
  return {{"name", "qharness"}, {"version", QH_VERSION}, {"commit", commit}};
}

ordered_json environment_block() {
  std::array<char, 256> host{};
  ::gethostname(host.data(), host.size() - 1);
  ordered_json cuda;
  ordered_json gpus = gpus_and_cuda(cuda);
#ifdef QH_CUDA_COMPILER_VERSION
  cuda["nvcc"] = QH_CUDA_COMPILER_VERSION;
#endif
  return {{"host", host.data()},
          {"cpu", {{"model", cpu_model()}, {"threads", std::thread::hardware_concurrency()}}},
          {"gpus", gpus},
          {"cuda", cuda},
          {"torch", QH_TORCH_VERSION},
          {"compiler", std::string(QH_CXX_COMPILER) + " " + __VERSION__}};
}

}  // namespace qh::cli
