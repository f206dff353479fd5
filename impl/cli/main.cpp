// The `qharness` command. Subcommands are added as their issues land; each has `--help`.
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "impl/cli/bench_command.h"
#include "impl/cli/convert_command.h"
#include "impl/cli/quantize_command.h"
#include "impl/cli/report_command.h"
#include "impl/cli/run_command.h"
#include "impl/cli/verify_command.h"
#include "impl/core/errors.h"

namespace {

constexpr const char* kUsage = R"(qharness )" QH_VERSION R"( - verification and benchmark harness for 4-bit LLM weight quantization

usage: qharness <command> [options]

commands:
  run       run the conformance suites and GPTQ on built-in synthetic layers, write results.json
  quantize  GPTQ the Linear weights of a safetensors file into a GPTQ checkpoint (GPTQModel's layout)
  verify    check a GPTQ checkpoint directory: config, packed tensors, v1/v2 zero points, biases
  convert   convert a GPTQ checkpoint to Marlin (--to marlin)
  bench     run the benchmarks (perf/ binaries) with GPU probes, write bench/results.json
  report    render results.json files (with the committed GPU baselines) into report.html and summary.json
  gate      compare a benchmark run with a baseline; exit 1 on a regression
  help      show this text; `qharness <command> --help` shows a command's options

exit status: 0 success, 1 a check failed, 2 bad usage or input (the message says which)
)";

constexpr const char* kRunUsage = R"(usage: qharness run [--out DIR] [--device auto|cpu|cuda] [--bench auto|none|quick|full]

Runs every conformance suite of this build (the GoogleTest binaries listed in bin/qh_suites.json) with
--gtest_output=json, then GPTQ on three built-in synthetic layers (fixed seeds; the reference against
round-to-nearest, the optimized CUDA path against the reference when a GPU is used), then `quantize` -> `verify` ->
load on a built-in tiny llama-like checkpoint with biases (gptq symmetric and gptq_v2 asymmetric; files kept in
DIR/checkpoint/), and merges the checks, the per-layer summaries and the environment (host, CPU, GPUs, CUDA, torch,
compiler) into DIR/results.json (schema: docs/results.md), then prints a summary. Per-suite console logs and gtest
reports are kept in DIR/suites/. The quick benchmark set runs too (as `qharness bench --set quick`: on a machine
without a GPU only its CPU benchmarks) and its entries and GPU probes are merged into results.json; their JSON and
logs are kept in DIR/bench/. Last, DIR/report.html and DIR/summary.json are written (as `qharness report`), with
the committed GPU baselines beside this run.

options:
  --out DIR       output directory (default: reports/out)
  --device D      auto (default): GPU cases run when a CUDA device is present and skip with the reason otherwise;
                  cpu: GPU cases skip; cuda: a missing CUDA device fails the GPU cases
  --bench B       auto (default): the quick set (CPU benchmarks only when no GPU is used); none; quick; full
  -h, --help      show this text

exit status: 0 every check passed or skipped, 1 a check failed, a suite crashed or the report failed, 2 bad usage
)";

constexpr const char* kReportUsage = R"(usage: qharness report RESULTS.json [MORE.json ...] [--out DIR] [--no-baselines]

Merges results.json files (from run, bench, verify, or baselines; the first is the current run) into one
self-contained DIR/report.html and DIR/summary.json: checks per suite with every failure and skip reason, the GPTQ
layer table, rooflines against each run's probes, Marlin GEMM against cuBLAS per shape, the cross-GPU model's
predictions against measured times for every pair of GPU classes, and per-family benchmark tables with the runs
side by side (docs/reports.md). The committed GPU baselines (fixtures/baselines/) are added unless --no-baselines.
Runs `python -m qh_report html` with the build's Python (QH_PYTHON overrides it).

options:
  --out DIR       output directory (default: reports/out)
  --no-baselines  only the given files
  -h, --help      show this text

exit status: 0 written, 2 bad input (the message names the file and what is wrong; nothing is written)
)";

constexpr const char* kGateUsage = R"(usage: qharness gate --baseline B.json --current C.json [--min-effect F] [--alpha P] [--model-error F]
                     [--probe-shift F]

The regression gate for GPU benchmarks (docs/benchmarks.md): per benchmark of either run, regressed, improved,
unchanged or not compared (and why). Same GPU class: a one-sided Mann-Whitney U test over the runs' samples (p below
--alpha, default 0.001) and a Hodges-Lehmann shift of at least --min-effect (default 0.03). Different classes: the
baseline carried to the current GPU by the cross-GPU model, with a band of min-effect + --model-error (default
0.11, the model's measured p90 error). Same class, where the runs' DRAM copy, tensor-core or SM clock probes differ
by more than --probe-shift (default 0.08), a warning, and a regression bound by a probe that fell (an improvement
by one that rose) says so: the GPU, not the code, may be what changed. Runs `python -m qh_report gate` with the
build's Python.

exit status: 0 no regression, 1 a regression, 2 bad input (the message names the file and what is wrong)
)";

constexpr const char* kBenchUsage = R"(usage: qharness bench [--out DIR] [--set quick|full] [--filter REGEX]

Runs the benchmark binaries of this build (qh_format_bench on the CPU; qh_quant_linear_bench and qh_gptq_bench on
the GPU, which first probe the GPU's limits: DRAM copy, L2, fp16 tensor cores, integer ALU, launch latency). Each
writes Google Benchmark JSON with a context.qharness block to DIR/bench/<binary>.json (log beside it); the merged
entries go to DIR/bench/results.json (schema: docs/results.md; counters: docs/benchmarks.md). On a machine without
a GPU the GPU benchmarks are skipped and only the CPU ones report.

options:
  --out DIR       output directory (default: reports/out)
  --set S         quick (default; one case per family at the quoted shapes, about a minute on an H100) or full
  --filter REGEX  a Google Benchmark filter applied to every binary instead of the set's
  -h, --help      show this text

exit status: 0 all ran, 1 a binary failed or a measurement was flagged as impossible (above a probed limit),
2 bad usage or a failed GPU probe
)";

constexpr const char* kQuantizeUsage = R"(usage: qharness quantize --weights FILE --calib FILE --out DIR [options]

GPTQ (FORMATS.md 2.2) on every <layer>.weight (out, in) of FILE that has calibration data in the --calib file:
<layer>.hessian (in, in), or <layer>.inputs (..., in) activations accumulated as GPTQ does. Other tensors (and
layers without calibration data or matched by --skip) are copied unchanged. Writes DIR/model.safetensors,
DIR/quantize_config.json (GPTQModel's layout) and DIR/config.json with quantization_config, each atomically and
only after every layer succeeded; prints per-layer progress and a summary table.

options:
  --bits B            2, 3, 4 or 8 (default 4)
  --group-size G      -1 or > 0 (default 128)
  --desc-act          act-order (default off)
  --asym              asymmetric grid (default symmetric)
  --static-groups     group grids from the unpermuted columns
  --format F          gptq (v1, default: zero points stored minus one, the most compatible) or gptq_v2. v1 cannot
                      store an asymmetric zero point of 0: such a layer is refused and gptq_v2 suggested
  --damp X            damp_percent, 0 < X < 1 (default 0.01); failed factorizations raise it by 0.0025
  --skip KEY          keep layers whose name contains KEY as whole components (repeatable); saved as
                      modules_to_not_convert
  --config FILE       the model's config.json to extend with quantization_config (default: {} )
  --device D          cpu (reference GPTQ, default) or cuda (optimized GPTQ)
  --float64           run the reference in float64
  -h, --help          show this text

exit status: 0 written, 2 bad usage or input (nothing written)
)";

constexpr const char* kVerifyUsage = R"(usage: qharness verify PATH [--base DIR] [--out DIR]

Checks the GPTQ checkpoint directory PATH (any tool's): the quantization config (valid; quantize_config.json and
config.json agreeing), every quantized layer's qweight/qzeros/scales/g_idx (dtypes, shapes, the bits the shapes
imply, g_idx in range and monotonic without desc_act, finite positive scales), stored zero points against
checkpoint_format (gptq = v1 vs gptq_v2), and biases: consistent across layers of one name, and with --base (the
unquantized model's directory) present exactly where the base model has one and equal to it. A checkpoint_format
"marlin" checkpoint (convert --to marlin) is checked as Marlin instead: each layer's B (K'/16, 2N') int32 and
s (groups, N') fp16/bf16 against the config and the layer's K and N, finite positive scales, perm present exactly
with desc_act and a permutation of 0..K-1, padded rows/columns of B at code 8 and padded scale columns at 0, and the
same bias checks. The unpadded K and N come from --base (else perm gives K and the bias N). Prints the findings and
writes them as checks into OUT/results.json (default reports/out/verify).

exit status: 0 no finding, 1 findings, 2 bad usage or unreadable PATH
)";

constexpr const char* kConvertUsage = R"(usage: qharness convert --to marlin IN OUT [--device cpu|cuda]

Converts the GPTQ checkpoint directory IN (gptq or gptq_v2) into a Marlin checkpoint in OUT: each 4-bit symmetric
layer's qweight/qzeros/scales/g_idx become B (K'/16, 2N') int32 and s (groups, N') in AutoGPTQ's Marlin layout, with
K' and N' the shapes zero-padded to whole tiles and groups (N' = N rounded up to 64; K' = K rounded up to the group
size, or to 16 for one group), plus perm (K,) int32 for act-order layers (not in AutoGPTQ's format; docs/marlin.md),
with the bias kept; other tensors are copied; quantize_config.json and config.json get checkpoint_format "marlin".
Layers Marlin cannot hold (bits != 4, asymmetric, group sizes other than -1/32/64/128, K not a multiple of 8) are
refused by name with the rule; nothing is written then. --device cuda runs the repack kernel.

exit status: 0 written, 2 bad usage or input
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
    if (a == "--out" || a == "--device" || a == "--bench") {
      if (i + 1 >= args.size()) return usage_error(a + " needs a value", kRunUsage);
      (a == "--out" ? options.out_dir : a == "--device" ? options.device : options.bench) = args[++i];
    } else {
      return usage_error("unknown option '" + a + "' for run", kRunUsage);
    }
  }
  return qh::cli::run_command(options, executable_dir());
}

int bench_main(const std::vector<std::string>& args) {
  qh::cli::BenchOptions options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kBenchUsage, stdout);
      return 0;
    }
    if (a == "--out" || a == "--set" || a == "--filter") {
      if (i + 1 >= args.size()) return usage_error(a + " needs a value", kBenchUsage);
      (a == "--out" ? options.out_dir : a == "--set" ? options.set : options.filter) = args[++i];
    } else {
      return usage_error("unknown option '" + a + "' for bench", kBenchUsage);
    }
  }
  return qh::cli::bench_command(options, executable_dir());
}

int report_main(const std::vector<std::string>& args) {
  std::vector<std::string> inputs;
  std::string out_dir = "reports/out";
  bool with_baselines = true;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kReportUsage, stdout);
      return 0;
    }
    if (a == "--out") {
      if (i + 1 >= args.size()) return usage_error("--out needs a value", kReportUsage);
      out_dir = args[++i];
    } else if (a == "--no-baselines") {
      with_baselines = false;
    } else if (!a.empty() && a[0] != '-') {
      inputs.push_back(a);
    } else {
      return usage_error("unknown option '" + a + "' for report", kReportUsage);
    }
  }
  if (inputs.empty()) return usage_error("report needs at least one results.json", kReportUsage);
  return qh::cli::write_report(inputs, out_dir, with_baselines);
}

// The gate's options are qh_report's own; they pass through unchanged after a check of their names.
int gate_main(const std::vector<std::string>& args) {
  bool baseline = false, current = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kGateUsage, stdout);
      return 0;
    }
    if (a != "--baseline" && a != "--current" && a != "--min-effect" && a != "--alpha" && a != "--model-error" &&
        a != "--probe-shift") {
      return usage_error("unknown option '" + a + "' for gate", kGateUsage);
    }
    if (i + 1 >= args.size()) return usage_error(a + " needs a value", kGateUsage);
    baseline |= a == "--baseline";
    current |= a == "--current";
    ++i;
  }
  if (!baseline || !current) return usage_error("gate needs --baseline and --current", kGateUsage);
  std::vector<std::string> forwarded = {"gate"};
  forwarded.insert(forwarded.end(), args.begin(), args.end());
  return qh::cli::run_qh_report(forwarded);
}

bool is_flag(const std::string& a, const char* name) { return a == name; }

int quantize_main(const std::vector<std::string>& args) {
  qh::cli::QuantizeOptions o;
  o.config.quantizer.clear();
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    if (a == "-h" || a == "--help") {
      std::fputs(kQuantizeUsage, stdout);
      return 0;
    }
    if (is_flag(a, "--desc-act")) o.config.desc_act = true;
    else if (is_flag(a, "--asym")) o.config.sym = false;
    else if (is_flag(a, "--static-groups")) o.config.static_groups = true;
    else if (is_flag(a, "--float64")) o.float64 = true;
    else if (a == "--weights" || a == "--calib" || a == "--out" || a == "--config" || a == "--device" ||
             a == "--skip" || a == "--bits" || a == "--group-size" || a == "--format" || a == "--damp") {
      const std::string* v = value();
      if (v == nullptr) return usage_error(a + " needs a value", kQuantizeUsage);
      try {
        if (a == "--weights") o.weights = *v;
        else if (a == "--calib") o.calibration = *v;
        else if (a == "--out") o.out_dir = *v;
        else if (a == "--config") o.base_config = *v;
        else if (a == "--device") o.device = *v;
        else if (a == "--skip") o.skip.push_back(*v);
        else if (a == "--bits") o.config.bits = std::stoi(*v);
        else if (a == "--group-size") o.config.group_size = std::stoi(*v);
        else if (a == "--damp") o.config.damp_percent = std::stod(*v);
        else if (const auto f = qh::format::parse_checkpoint_format(*v)) o.config.checkpoint_format = *f;
        else return usage_error("--format takes gptq or gptq_v2, not '" + *v + "'", kQuantizeUsage);
      } catch (const std::logic_error&) {
        return usage_error(a + " needs a number, not '" + *v + "'", kQuantizeUsage);
      }
    } else {
      return usage_error("unknown option '" + a + "' for quantize", kQuantizeUsage);
    }
  }
  if (o.weights.empty() || o.calibration.empty() || o.out_dir.empty()) {
    return usage_error("--weights, --calib and --out are required", kQuantizeUsage);
  }
  if (o.device != "cpu" && o.device != "cuda") return usage_error("--device takes cpu or cuda", kQuantizeUsage);
  return qh::cli::quantize_command(o);
}

int convert_main(const std::vector<std::string>& args) {
  qh::cli::ConvertOptions o;
  std::string to;
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kConvertUsage, stdout);
      return 0;
    }
    if (a == "--to" || a == "--device") {
      if (i + 1 >= args.size()) return usage_error(a + " needs a value", kConvertUsage);
      (a == "--to" ? to : o.device) = args[++i];
    } else if (!a.empty() && a[0] != '-') {
      positional.push_back(a);
    } else {
      return usage_error("unknown option '" + a + "' for convert", kConvertUsage);
    }
  }
  if (to != "marlin") return usage_error("convert needs --to marlin", kConvertUsage);
  if (positional.size() != 2) return usage_error("convert needs IN and OUT directories", kConvertUsage);
  if (o.device != "cpu" && o.device != "cuda") return usage_error("--device takes cpu or cuda", kConvertUsage);
  o.in_dir = positional[0];
  o.out_dir = positional[1];
  return qh::cli::convert_command(o);
}

int verify_main(const std::vector<std::string>& args) {
  qh::cli::VerifyOptions o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kVerifyUsage, stdout);
      return 0;
    }
    if (a == "--base" || a == "--out") {
      if (i + 1 >= args.size()) return usage_error(a + " needs a value", kVerifyUsage);
      (a == "--base" ? o.base : o.out_dir) = args[++i];
    } else if (!a.empty() && a[0] != '-' && o.path.empty()) {
      o.path = a;
    } else {
      return usage_error("unexpected argument '" + a + "' for verify", kVerifyUsage);
    }
  }
  if (o.path.empty()) return usage_error("verify needs a checkpoint directory", kVerifyUsage);
  return qh::cli::verify_command(o);
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
    if (command == "quantize") return quantize_main(args);
    if (command == "verify") return verify_main(args);
    if (command == "convert") return convert_main(args);
    if (command == "bench") return bench_main(args);
    if (command == "report") return report_main(args);
    if (command == "gate") return gate_main(args);
    return usage_error("unknown command '" + command + "'", kUsage);
  } catch (const qh::Error& e) {
    std::fprintf(stderr, "qharness %s: error: %s\n", command.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {  // from LibTorch or the standard library: still a message, not an abort
    std::fprintf(stderr, "qharness %s: internal error: %s\n", command.c_str(), e.what());
    return 2;
  }
}
