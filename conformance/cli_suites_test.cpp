// `qharness run`'s view of a suite (impl/cli/suites): a test binary's GoogleTest report and console become checks
// with the failure text or skip reason; a binary that crashes becomes an `error` check naming the case that was
// running, so a crash can never read as a pass. Fake suites are shell scripts that print what gtest would.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>

#include "conformance/testing.h"
#include "impl/cli/suites.h"
#include "impl/core/errors.h"

namespace qh::cli {
namespace {

// A fake test binary: a shell script running `body` (it gets the --gtest_output=json:PATH argument as $1).
Suite fake_suite(const testing::TempDir& dir, const std::string& body) {
  const std::string path = dir.file("fake_suite.sh");
  std::ofstream(path) << "#!/bin/sh\nout=\"${1#--gtest_output=json:}\"\n" << body << "\n";
  ::chmod(path.c_str(), 0755);
  return {"fake_suite", path};
}

const char* kReport = R"({"testsuites": [
  {"name": "A", "testsuite": [
    {"name": "Pass", "file": "a.cpp", "line": 3, "status": "RUN", "result": "COMPLETED", "time": "0.25s"},
    {"name": "Fail", "file": "a.cpp", "line": 4, "status": "RUN", "result": "COMPLETED", "time": "0s",
     "failures": [{"failure": "a.cpp:4\nExpected equality", "type": ""}]}]},
  {"name": "GpuA", "testsuite": [
    {"name": "Skip", "file": "a.cpp", "line": 5, "status": "RUN", "result": "SKIPPED", "time": "0s"}]}]})";

TEST(CliSuites, ReportAndConsoleBecomeChecks) {
  testing::TempDir dir;
  const Suite suite = fake_suite(dir, std::string("cat > \"$out\" <<'EOF'\n") + kReport +
                                          "\nEOF\n"
                                          "echo '[ RUN      ] GpuA.Skip'\n"
                                          "echo 'a.cpp:5: Skipped'\n"
                                          "echo 'no usable CUDA device: cudaErrorNoDevice'\n"
                                          "echo '[  SKIPPED ] GpuA.Skip (0 ms)'\n"
                                          "exit 1");
  const SuiteRun run = run_suite(suite, dir.path(), {{"QH_DEVICE", "cpu"}});
  EXPECT_EQ(run.exit_code, 1);
  const auto checks = checks_from_run(suite, run);
  ASSERT_EQ(checks.size(), 3u) << checks.dump(2);
  EXPECT_EQ(checks[0]["name"], "A.Pass");
  EXPECT_EQ(checks[0]["status"], "pass");
  EXPECT_DOUBLE_EQ(checks[0]["duration_s"].get<double>(), 0.25);
  EXPECT_EQ(checks[1]["status"], "fail");
  EXPECT_EQ(checks[1]["message"], "a.cpp:4\nExpected equality");
  EXPECT_EQ(checks[2]["status"], "skip");
  EXPECT_EQ(checks[2]["message"], "no usable CUDA device: cudaErrorNoDevice");
  EXPECT_EQ(checks[2]["suite"], "fake_suite");
}

TEST(CliSuites, EnvironmentReachesTheSuite) {
  testing::TempDir dir;
  const Suite suite = fake_suite(dir, "echo \"device=$QH_DEVICE\"; echo '{\"testsuites\": []}' > \"$out\"");
  const SuiteRun run = run_suite(suite, dir.path(), {{"QH_DEVICE", "cuda"}});
  EXPECT_NE(run.console.find("device=cuda"), std::string::npos) << run.console;
  EXPECT_TRUE(checks_from_run(suite, run).empty());
}

TEST(CliSuites, CrashIsAnErrorNamingTheRunningCase) {
  testing::TempDir dir;
  const Suite suite = fake_suite(dir, "echo '[ RUN      ] A.First'; echo '[       OK ] A.First (0 ms)';"
                                      "echo '[ RUN      ] A.Second'; kill -SEGV $$");
  const SuiteRun run = run_suite(suite, dir.path(), {});
  EXPECT_EQ(run.exit_code, 128 + SIGSEGV);
  const auto checks = checks_from_run(suite, run);
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0]["status"], "error");
  EXPECT_EQ(checks[0]["name"], "fake_suite/A.Second");
  EXPECT_NE(checks[0]["message"].get<std::string>().find("(killed by signal 11) while running A.Second"),
            std::string::npos) << checks[0]["message"];
}

TEST(CliSuites, MissingManifestSaysWhatToDo) {
  testing::TempDir dir;
  try {
    read_suite_manifest(dir.file("qh_suites.json"));
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("build the project first"), std::string::npos) << e.what();
  }
}

TEST(CliSuites, MalformedManifestIsConfigError) {
  testing::TempDir dir;
  std::ofstream(dir.file("qh_suites.json")) << R"([{"name": "x"}])";
  EXPECT_THROW(read_suite_manifest(dir.file("qh_suites.json")), ConfigError);
}

}  // namespace
}  // namespace qh::cli
