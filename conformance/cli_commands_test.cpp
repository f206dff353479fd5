// `qharness quantize` and `qharness verify` end to end: a checkpoint written from a safetensors file of weights and
// calibration activations loads, verifies clean and keeps its biases; bad input writes nothing (DESIGN.md: the v1
// asymmetric zero point of 0 is refused with the layer's name and gptq_v2 suggested, never a corrupt word).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include <nlohmann/json.hpp>

#include "conformance/testing.h"
#include "impl/checkpoint/loader.h"
#include "impl/checkpoint/safetensors_tensors.h"
#include "impl/checkpoint/verify.h"
#include "impl/cli/bench_command.h"
#include "impl/cli/checkpoint_fixtures.h"
#include "impl/cli/convert_command.h"
#include "impl/cli/quantize_command.h"
#include "impl/cli/report_command.h"
#include "impl/cli/suites.h"
#include "impl/cli/verify_command.h"
#include "impl/core/errors.h"
#include "impl/model/layers.h"

namespace qh {
namespace {

using testing::TempDir;

struct Inputs {
  TempDir dir;
  model::Model model;
  cli::QuantizeOptions options;
};

// A tiny llama with biases, written as quantize's inputs by the same code `qharness run` uses.
std::unique_ptr<Inputs> inputs(std::uint64_t seed = 9) {
  auto in = std::make_unique<Inputs>();
  in->model = model::build_model(model::tiny_llama_config(true, false, false), c10::kCPU);
  model::init_random(in->model, seed);
  in->options = cli::write_quantize_inputs(in->model, in->dir.path(), seed);
  in->options.out_dir = in->dir.file("out");
  return in;
}

// quantize -> a directory our loader, our verify and GPTQModel's config layout all accept, biases intact.
TEST(CliCommands, QuantizeWritesALoadableCheckpoint) {
  auto in = inputs();
  ASSERT_EQ(cli::quantize_command(in->options), 0);
  const auto report = checkpoint::verify_checkpoint(in->options.out_dir);
  EXPECT_EQ(report.layers.size(), 14u);
  for (const auto& f : report.findings) ADD_FAILURE() << f.layer << ": " << f.message;
  const auto loaded = checkpoint::load_checkpoint(in->options.out_dir, {});
  const char* q = "model.layers.1.self_attn.q_proj";
  EXPECT_EQ(model::find_module(*loaded.model.root, q)->kind(), "QuantLinear");
  EXPECT_TRUE(model::find_module(*loaded.model.root, q)->tensor("bias").equal(
      model::find_module(*in->model.root, q)->tensor("bias")));
  std::ifstream config(in->options.out_dir + "/quantize_config.json");
  const auto json = nlohmann::json::parse(config);
  EXPECT_EQ(json["bits"], 4);
  EXPECT_EQ(json["group_size"], 32);
  EXPECT_EQ(json["checkpoint_format"], "gptq");
  EXPECT_EQ(json["meta"]["damp_percent"], 0.01);
}

// A group whose weights are all >= 0 has the asymmetric zero point 0: v1 cannot store it. The error names the
// layer and suggests gptq_v2, and no file is written; gptq_v2 writes it.
TEST(CliCommands, QuantizeRefusesV1ZeroPointZero) {
  auto in = inputs();
  {
    auto weights = checkpoint::load_all(in->options.weights, c10::kCPU);
    std::vector<std::pair<std::string, at::Tensor>> edited;
    for (auto& [name, t] : weights) {
      at::Tensor v = t.clone();
      if (name == "model.layers.0.mlp.up_proj.weight") v.narrow(1, 0, 32).abs_();  // row 0.., group 0: all >= 0
      edited.emplace_back(name, v);
    }
    weights.clear();
    checkpoint::save_tensors(in->options.weights, edited);
  }
  in->options.config.sym = false;
  try {
    cli::quantize_command(in->options);
    FAIL() << "a v1 zero point of 0 was written";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.up_proj"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("gptq_v2"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(in->options.out_dir + "/model.safetensors"));
  in->options.config.checkpoint_format = format::CheckpointFormat::GptqV2;
  EXPECT_EQ(cli::quantize_command(in->options), 0);
  EXPECT_TRUE(checkpoint::verify_checkpoint(in->options.out_dir).findings.empty());
}

// NaN in the calibration data is an error naming the layer, before anything is written.
TEST(CliCommands, QuantizeRefusesNanCalibration) {
  auto in = inputs();
  {
    auto calib = checkpoint::load_all(in->options.calibration, c10::kCPU);
    std::vector<std::pair<std::string, at::Tensor>> edited;
    for (auto& [name, t] : calib) {
      at::Tensor v = t.clone();
      if (name == "model.layers.1.mlp.down_proj.inputs") v[3][4][5] = NAN;
      edited.emplace_back(name, v);
    }
    calib.clear();
    checkpoint::save_tensors(in->options.calibration, edited);
  }
  try {
    cli::quantize_command(in->options);
    FAIL() << "NaN calibration accepted";
  } catch (const NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.down_proj"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(in->options.out_dir));
}

// verify's exit status and results.json: a clean checkpoint passes, a damaged one fails with the finding.
TEST(CliCommands, VerifyExitStatusAndResults) {
  auto in = inputs();
  ASSERT_EQ(cli::quantize_command(in->options), 0);
  cli::VerifyOptions v;
  v.path = in->options.out_dir;
  v.out_dir = in->dir.file("verify");
  EXPECT_EQ(cli::verify_command(v), 0);
  std::filesystem::remove(in->options.out_dir + "/quantize_config.json");
  std::filesystem::remove(in->options.out_dir + "/config.json");
  EXPECT_EQ(cli::verify_command(v), 1);
  std::ifstream results(v.out_dir + "/results.json");
  const auto json = nlohmann::json::parse(results);
  EXPECT_EQ(json["summary"]["fail"], 1);
  EXPECT_EQ(json["checks"][0]["name"], "verify/checkpoint/config");
}

}  // namespace
}  // namespace qh

namespace qh {
namespace {

using testing::error_of;

// quantize's bad input: nothing to quantize, a Marlin target, an unreadable base config; each named, nothing written.
TEST(CliCommands, QuantizeBadInputIsNamed) {
  auto in = inputs();
  cli::QuantizeOptions o = in->options;
  o.calibration = o.weights;  // a file with no <layer>.inputs / .hessian
  EXPECT_NE(std::string(error_of<ConfigError>([&] { cli::quantize_command(o); }).what()).find("calibration data"),
            std::string::npos);
  o = in->options;
  o.config.checkpoint_format = format::CheckpointFormat::Marlin;
  EXPECT_NE(std::string(error_of<ConfigError>([&] { cli::quantize_command(o); }).what()).find("marlin"),
            std::string::npos);
  o = in->options;
  o.base_config = in->dir.file("missing.json");
  const auto e = error_of<IoError>([&] { cli::quantize_command(o); });
  EXPECT_EQ(e.where().file, o.base_config);
  EXPECT_NE(std::string(e.what()).find("cannot open the base config"), std::string::npos) << e.what();
  EXPECT_FALSE(std::filesystem::exists(in->options.out_dir + "/model.safetensors"));
}

// convert refuses a plain checkpoint and one that is already Marlin; verify refuses a path that is not a directory.
TEST(CliCommands, ConvertAndVerifyBadInput) {
  auto in = inputs();
  cli::ConvertOptions c;
  c.in_dir = in->dir.path();  // config.json without quantization_config
  c.out_dir = in->dir.file("marlin");
  EXPECT_NE(std::string(error_of<ConfigError>([&] { cli::convert_command(c); }).what()).find("GPTQ checkpoint"),
            std::string::npos);
  in->options.config.group_size = 32;
  ASSERT_EQ(cli::quantize_command(in->options), 0);
  c.in_dir = in->options.out_dir;
  ASSERT_EQ(cli::convert_command(c), 0);
  c.in_dir = c.out_dir;
  c.out_dir = in->dir.file("again");
  EXPECT_NE(std::string(error_of<ConfigError>([&] { cli::convert_command(c); }).what()).find("already marlin"),
            std::string::npos);
  EXPECT_THROW(checkpoint::verify_checkpoint(in->options.weights), IoError);
}

// The loader's bad input: no model.safetensors, no config.json, and tensors whose shapes the config contradicts
// (a group size other than the one the file was packed with), each named.
TEST(CliCommands, LoaderBadInputIsNamed) {
  auto in = inputs();
  ASSERT_EQ(cli::quantize_command(in->options), 0);
  const std::string ckpt = in->options.out_dir;
  std::filesystem::rename(ckpt + "/model.safetensors", ckpt + "/moved.safetensors");
  EXPECT_EQ(error_of<IoError>([&] { checkpoint::load_checkpoint(ckpt, {}); }).where().file,
            ckpt + "/model.safetensors");
  std::filesystem::rename(ckpt + "/moved.safetensors", ckpt + "/model.safetensors");
  for (const char* name : {"quantize_config.json", "config.json"}) {
    std::string text = testing::read_text(ckpt + "/" + name);
    text.replace(text.find("\"group_size\": 32"), 16, "\"group_size\": 64");
    std::ofstream(ckpt + "/" + name) << text;
  }
  const auto e = error_of<ShapeError>([&] { checkpoint::load_checkpoint(ckpt, {}); });
  EXPECT_NE(e.where().tensor.find(".qzeros"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("expected [2, 16], found [4, 16]"), std::string::npos) << e.what();
  std::filesystem::remove(ckpt + "/config.json");
  EXPECT_THROW(checkpoint::load_checkpoint(ckpt, {}), IoError);
}

// `qharness bench` (and run's benchmark step): entries come back under family/variant/axes names with the binary
// that ran them; a binary whose benchmarks the filter does not reach, or which skips them for want of a GPU, is
// not a failure. The benchmark binaries sit next to this test binary (bin/).
TEST(CliBench, MergesEntriesByNameAndBinary) {
  const std::string bin = std::filesystem::canonical("/proc/self/exe").parent_path().string();
  if (!std::filesystem::exists(bin + "/qh_format_bench")) GTEST_SKIP() << "built without benchmarks (QH_BENCH=OFF)";
  TempDir dir;
  const auto r = cli::run_benchmarks({.out_dir = dir.path(), .set = "quick", .filter = "parse_header/tensors:16$"}, bin);
  EXPECT_TRUE(r.failures.empty()) << r.failures.dump(2);
  ASSERT_EQ(r.benchmarks.size(), 1u) << r.benchmarks.dump(2);
  EXPECT_EQ(r.benchmarks[0]["name"], "safetensors/parse_header/tensors:16");
  EXPECT_EQ(r.benchmarks[0]["binary"], "qh_format_bench");
  EXPECT_GT(r.benchmarks[0]["real_time"].get<double>(), 0);
  EXPECT_TRUE(std::filesystem::exists(dir.file("bench/qh_format_bench.json")));
  try {
    cli::run_benchmarks({.out_dir = dir.path(), .set = "fast"}, bin);
    ADD_FAILURE() << "--set fast accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--set takes quick or full"), std::string::npos) << e.what();
  }
}

// `qharness report`, `qharness gate` and the end of `qharness run` reach this tree's qh_report through the build's
// Python: a report beside the committed baselines, an A/A gate that passes, and bad input refused with exit 2 and
// nothing written (the Python side's rules are pinned by reports/tests; this pins the front).
TEST(CliReport, FrontsRunQhReport) {
  TempDir dir;
  const std::string h100 = cli::baselines_dir() + "/nvidia-h100-80gb-hbm3.json";
  ASSERT_EQ(cli::write_report({h100}, dir.file("with"), /*with_baselines=*/true), 0);
  const auto summary = nlohmann::json::parse(testing::read_text(dir.file("with/summary.json")));
  EXPECT_EQ(summary["runs"].size(), 3u) << summary.dump(1);  // the file itself and both committed baselines
  EXPECT_TRUE(std::filesystem::exists(dir.file("with/report.html")));
  ASSERT_EQ(cli::write_report({h100}, dir.file("alone"), /*with_baselines=*/false), 0);
  EXPECT_EQ(nlohmann::json::parse(testing::read_text(dir.file("alone/summary.json")))["runs"].size(), 1u);
  EXPECT_EQ(cli::run_qh_report({"gate", "--baseline", h100, "--current", h100}), 0);
  const std::string bad = dir.file("bad.json");
  std::ofstream(bad) << R"({"schema_version": 7, "benchmarks": []})";
  EXPECT_EQ(cli::write_report({bad}, dir.file("bad"), false), 2);
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad/report.html")));
  EXPECT_EQ(cli::run_qh_report({"gate", "--baseline", bad, "--current", h100}), 2);
  // The CLI's own usage checks, before any Python runs.
  const std::string qharness = std::filesystem::canonical("/proc/self/exe").parent_path().string() + "/qharness";
  const std::string log = dir.file("usage.log");
  EXPECT_EQ(cli::run_process({qharness, "gate", "--bogus", "x"}, log, {}), 2);
  EXPECT_NE(testing::read_text(log).find("unknown option '--bogus' for gate"), std::string::npos);
  EXPECT_EQ(cli::run_process({qharness, "gate", "--baseline", h100}, log, {}), 2);
  EXPECT_NE(testing::read_text(log).find("gate needs --baseline and --current"), std::string::npos);
  // The front passes qh_report's --probe-shift through (an A/A gate: no probe moved, no regression).
  EXPECT_EQ(
      cli::run_process({qharness, "gate", "--baseline", h100, "--current", h100, "--probe-shift", "0.1"}, log, {}), 0)
      << testing::read_text(log);
  EXPECT_EQ(cli::run_process({qharness, "report"}, log, {}), 2);
  EXPECT_NE(testing::read_text(log).find("report needs at least one results.json"), std::string::npos);
}

}  // namespace
}  // namespace qh
