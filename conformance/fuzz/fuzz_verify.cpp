// libFuzzer target: `qharness verify`'s checks (impl/checkpoint/verify.cpp, verify_marlin.cpp) on a checkpoint
// directory made from the input. The only LibTorch-linked target: the verifier reads tensors as at::Tensor.
// Input: a sequence of records {u8 file, u32 little-endian length, bytes} (ci/fuzz_seeds.py writes seeds in this
// form from the fixtures); `file` picks one of kFiles; a record that runs past the end is cut short. Beyond
// fuzz_checks.h's properties: verify either returns a report whose findings all say what is wrong, or refuses with
// a typed error naming a file of the checkpoint.
#include <ATen/Parallel.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "conformance/fuzz/fuzz_checks.h"
#include "impl/checkpoint/verify.h"

namespace {

using namespace qh;
namespace fs = std::filesystem;

constexpr const char* kFiles[] = {"quantize_config.json", "config.json", "model.safetensors", "quant_config.json",
                                  "base/model.safetensors", "model-00002-of-00002.safetensors"};
constexpr std::size_t kFileCount = sizeof(kFiles) / sizeof(kFiles[0]);

std::string g_dir;  // one directory for the whole run, emptied before every input

void make_directory() {
  const char* shm = "/dev/shm";
  std::string pattern = (fs::is_directory(shm) ? std::string(shm) : fs::temp_directory_path().string()) +
                        "/qh-fuzz-verify-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) fuzz::require(false, "cannot create a directory for fuzz_verify");
  g_dir = pattern;
  std::atexit([] { fs::remove_all(g_dir); });
}

// Writes the input's records as files; returns whether a base model was given.
bool write_checkpoint(const std::uint8_t* data, std::size_t size) {
  for (const auto& entry : fs::directory_iterator(g_dir)) fs::remove_all(entry.path());
  fs::create_directory(g_dir + "/base");
  bool has_base = false;
  std::size_t at = 0;
  while (at + 5 <= size) {
    const std::size_t file = data[at] % kFileCount;
    const std::uint32_t length = std::uint32_t(data[at + 1]) | std::uint32_t(data[at + 2]) << 8 |
                                 std::uint32_t(data[at + 3]) << 16 | std::uint32_t(data[at + 4]) << 24;
    at += 5;
    const std::size_t n = std::min<std::size_t>(length, size - at);
    std::ofstream(g_dir + "/" + kFiles[file], std::ios::binary).write(reinterpret_cast<const char*>(data + at),
                                                                     std::streamsize(n));
    has_base |= file == 4;
    at += n;
  }
  return has_base;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);  // one input at a time, no worker threads for the sanitizers to follow
  make_directory();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bool has_base = write_checkpoint(data, size);
  checkpoint::VerifyReport report;
  try {
    report = checkpoint::verify_checkpoint(g_dir, has_base ? g_dir + "/base" : "");
  } catch (const Error& e) {
    fuzz::require_names(e, g_dir);
    return 0;
  }
  for (const auto& f : report.findings) {
    fuzz::require(!f.check.empty() && !f.message.empty(), "a verify finding without a check or a message");
  }
  return 0;
}
