// Peak resident memory of loading a checkpoint (issue: loading must not hold two copies of the weights). Writes a
// synthetic llama-like checkpoint of about SIZE GiB (fp16, or with --quantized QuantLinear layers packed from random
// codes so no GPTQ run is needed), then loads it in a fresh process, touches every byte (a checksum over all
// tensors, so the mapped pages really are resident) and reports that process's peak RSS (VmHWM) against the file
// size, and its RSS before loading (LibTorch itself).
//
//   qh_load_memory [--gib SIZE] [--quantized] [--dir DIR]
#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "impl/checkpoint/loader.h"
#include "impl/checkpoint/writer.h"
#include "impl/model/layers.h"
#include "impl/quant_linear/quant_linear.h"

namespace {

// A /proc/self/status field in KiB: VmRSS (now) or VmHWM (peak since exec).
std::uint64_t status_kib(const char* field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(field, 0) == 0) return std::stoull(line.substr(std::strlen(field)));
  }
  return 0;
}

// Random codes and grids for every Linear but the head: shapes and bytes of a real 4-bit checkpoint.
void quantize_randomly(qh::model::Model& m) {
  qh::format::QuantizeConfig qc;
  const auto layout = qh::checkpoint::layout_from(qc);
  for (const auto& d : qh::checkpoint::plan_modules(m, layout, {})) {
    if (d.action != qh::checkpoint::ModuleAction::Quantized) continue;
    const auto* linear = dynamic_cast<const qh::model::Linear*>(qh::model::find_module(*m.root, d.module));
    const auto spec = *layout.spec_for(d.module, linear->in_features(), linear->out_features());
    const std::int64_t n = spec.out_features, k = spec.in_features, g = spec.groups();
    auto q = qh::quant_linear::make_quant_linear(
        at::randint(16, {n, k}, at::kInt), at::full({n, g}, 8, at::kInt), at::rand({n, g}) * 0.01 + 1e-3,
        at::arange(k, at::kInt).div(spec.group_length(), "floor"), at::Tensor(), spec, at::kHalf, d.module);
    qh::model::replace_module(*m.root, d.module, std::move(q));
  }
}

}  // namespace

// --load DIR: load, touch every byte, print what the loader did and this process's RSS before and after.
int load_and_touch(const std::string& dir) {
  const std::uint64_t before = status_kib("VmRSS:");
  const auto loaded = qh::checkpoint::load_checkpoint(dir, {});
  double checksum = 0;
  for (const auto& t : qh::model::named_tensors(*loaded.model.root)) {
    const at::Tensor flat = t.slot->value.reshape(-1);
    for (std::int64_t at = 0; at < flat.numel(); at += 1 << 20) {  // chunks: no full-size temporary
      checksum += flat.narrow(0, at, std::min<std::int64_t>(1 << 20, flat.numel() - at)).to(at::kDouble).sum().item<double>();
    }
  }
  const double file = double(std::filesystem::file_size(dir + "/model.safetensors"));
  const double peak = double(status_kib("VmHWM:")) * 1024, base = double(before) * 1024;
  std::printf("load %s (%.3f GiB): peak RSS %.3f GiB = %.3f x file; before loading (LibTorch) %.3f GiB; the load "
              "added %.3f GiB = %.3f x file; bytes copied %lu, viewed %lu (checksum %.6g)\n",
              dir.c_str(), file / (1 << 30), peak / (1 << 30), peak / file, base / (1 << 30), (peak - base) / (1 << 30),
              (peak - base) / file, (unsigned long)loaded.report.bytes_copied,
              (unsigned long)loaded.report.bytes_viewed, checksum);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && !std::strcmp(argv[1], "--load")) return load_and_touch(argv[2]);
  double gib = 1.0;
  bool quantized = false;
  std::string dir = "build/load_memory";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--gib") && i + 1 < argc) gib = std::stod(argv[++i]);
    else if (!std::strcmp(argv[i], "--quantized")) quantized = true;
    else if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else {
      std::fprintf(stderr, "usage: qh_load_memory [--gib SIZE] [--quantized] [--dir DIR]\n");
      return 2;
    }
  }
  auto config = qh::model::tiny_llama_config(false, false, false);
  config.hidden_size = 2048;
  config.intermediate_size = 5632;
  config.vocab_size = 32000;
  // fp16 bytes per layer: 4 h^2 + 3 h i; quantized 4-bit layers hold about a quarter of that plus scales.
  const double per_layer = 2.0 * (4.0 * 2048 * 2048 + 3.0 * 2048 * 5632) * (quantized ? 0.27 : 1.0);
  const double fixed = 2.0 * 2.0 * 32000 * 2048;
  config.num_layers = std::max<std::int64_t>(1, std::int64_t((gib * (1 << 30) - fixed) / per_layer + 0.5));
  {
    auto m = qh::model::build_model(config, c10::kCPU);
    qh::model::init_random(m, 1);
    qh::format::QuantizeConfig qc;
    if (quantized) quantize_randomly(m);
    qh::checkpoint::save_checkpoint(m, dir, quantized ? &qc : nullptr);
  }

  // A fresh process loads (not a fork: LibTorch's thread pools do not survive one), so its peak (VmHWM, since
  // exec) holds nothing of the writer's memory.
  std::printf("wrote %s (%s, %ld layers)\n", dir.c_str(), quantized ? "4-bit GPTQ" : "fp16", long(config.num_layers));
  std::fflush(stdout);
  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  const int status = std::system((self + " --load '" + dir + "'").c_str());
  return status == 0 ? 0 : 1;
}
