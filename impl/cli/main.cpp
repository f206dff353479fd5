// The `qharness` command. Subcommands are added as their issues land; each has `--help`.
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "impl/cli/run_command.h"
#include "impl/core/errors.h"

namespace {

constexpr const char* kUsage = R"(qharness )" QH_VERSION R"( - verification and benchmark harness for 4-bit LLM weight quantization

usage: qharness <command> [options]

commands:
  run       run the conformance suites and GPTQ on built-in synthetic layers, write results.json
  help      show this text; `qharness <command> --help` shows a command's options

exit status: 0 success, 1 a check failed, 2 bad usage or input (the message says which)
)";

constexpr const char* kRunUsage = R"(usage: qharness run [--out DIR] [--device auto|cpu|cuda]

Runs every conformance suite of this build (the GoogleTest binaries listed in bin/qh_suites.json) with
--gtest_output=json, then GPTQ on three built-in synthetic layers (fixed seeds; the reference against
round-to-nearest, the optimized CUDA path against the reference when a GPU is used), and merges the checks, the
per-layer summaries and the environment (host, CPU, GPUs, CUDA, torch, compiler) into DIR/results.json (schema:
docs/results.md), then prints a summary. Per-suite console logs and gtest reports are kept in DIR/suites/.

options:
  --out DIR       output directory (default: reports/out)
  --device D      auto (default): GPU cases run when a CUDA device is present and skip with the reason otherwise;
                  cpu: GPU cases skip; cuda: a missing CUDA device fails the GPU cases
  -h, --help      show this text

exit status: 0 every check passed or skipped, 1 a check failed or a suite crashed, 2 bad usage
)";

// Directory of the running executable: the suite manifest is written next to it by the build.
std::string executable_dir() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = '\0';
  return std::filesystem::path(buf).parent_path().string();
}

int usage_error(const std::string& message, const char* usage) {
  std::fprintf(stderr, "qharness: %s\n\n%s", message.c_str(), usage);
  return 2;
}

int run_main(const std::vector<std::string>& args) {
  qh::cli::RunOptions options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kRunUsage, stdout);
      return 0;
    }
    if (a == "--out" || a == "--device") {
      if (i + 1 >= args.size()) return usage_error(a + " needs a value", kRunUsage);
      (a == "--out" ? options.out_dir : options.device) = args[++i];
    } else {
      return usage_error("unknown option '" + a + "' for run", kRunUsage);
    }
  }
  return qh::cli::run_command(options, executable_dir());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("no command given", kUsage);
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "-h" || command == "--help" || command == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (command == "--version") {
      std::printf("qharness %s\n", QH_VERSION);
      return 0;
    }
    if (command == "run") return run_main(args);
    return usage_error("unknown command '" + command + "'", kUsage);
  } catch (const qh::Error& e) {
    std::fprintf(stderr, "qharness %s: error: %s\n", command.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {  // from LibTorch or the standard library: still a message, not an abort
    std::fprintf(stderr, "qharness %s: internal error: %s\n", command.c_str(), e.what());
    return 2;
  }
}
