// Crash safety of every file writer: a writer process killed with SIGKILL at a random moment leaves its destination
// holding the old complete file or the new complete file, never a partial one. This is the AtomicFile contract
// (impl/core/atomic_file.h): the bytes go to a temporary file next to the destination, which is flushed and renamed
// over it only once complete, so the destination changes in one step. The writers covered are the checkpoint's
// safetensors writer (format::write_file, which checkpoint/writer.cpp reaches through save_tensors),
// write_file_atomically (results.json, config.json) and write_quantize_config (quantize_config.json).
//
// Method: a forked child runs the real writer and the parent kills it after a random delay drawn over the length of
// a complete write, so kills land before, during and after the write; every outcome must then be OLD or NEW (or no
// file, when there was none before). A run in which no kill landed mid-write (the child killed with its temporary
// present and the destination untouched) would prove nothing, so it fails, except for the tiny quantize_config.json.
// SIGKILL shows process-crash safety only; durability across a power loss (the fsyncs) cannot be shown this way.
//
// The one trace a killed writer may leave is its temporary `<dest>.tmp-XXXXXX`: a SIGKILLed process runs no
// destructor, and no writer removes another's leftovers. Anything else in the directory is a failure.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "conformance/testing.h"
#include "impl/core/atomic_file.h"
#include "impl/format/quantize_config.h"
#include "impl/format/safetensors.h"

namespace qh {
namespace {

using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;
using Micros = std::chrono::microseconds;

constexpr int kTrials = 50;
// Odd, so that the median is one of the runs; enough to shrug off one slow run (a cold page cache, a busy disk).
constexpr int kCalibrationRuns = 5;
// Kill delays reach a little past a complete write, so that the end of the write (fsync, rename, directory fsync)
// lies inside the window too and some kills find the child already finished.
constexpr double kWindowFactor = 1.2;
// Fixed, so that a failing run can be replayed with the same delays (the writer's own timing still varies).
constexpr std::uint64_t kSeed = 0x5AFE'C0DE'2024'0001ull;

// fork() without exec is safe here only because qh_format_tests is torch-free and single-threaded: no other thread
// can hold a malloc, stdio or iostream lock at the moment of the fork, so the child may allocate and write freely.
int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// One writer under test: `write` writes `new_content` to `dest` through the real writer.
struct CrashCase {
  std::string name;  // for the report line
  std::string dest;
  std::optional<Bytes> old_content;  // std::nullopt: no previous file at `dest`
  Bytes new_content;
  std::function<void()> write;
  // A small file (quantize_config.json) takes microseconds to write; what time its write takes is the fsyncs, which
  // cost nothing on tmpfs, so there a kill may never land mid-write. For those only the outcomes are checked.
  bool require_kill_mid_write = true;
};

struct Outcomes {
  int old_kept = 0;       // killed, destination OLD (or still absent)
  int old_with_temp = 0;  // ... and the writer's temporary was left: killed between creating it and the rename
  int new_complete = 0;   // killed, destination NEW: killed after the rename
  int finished = 0;       // the child exited before the kill
};

void put_old_state(const CrashCase& c) {
  if (c.old_content) {
    testing::write_bytes(c.dest, *c.old_content);
  } else {
    std::filesystem::remove(c.dest);
  }
}

int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid failed");
  }
  return status;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    return code == 0 ? "exited normally"
                     : "exited with " + std::to_string(code) + (code == 2 ? " (the writer threw)" : "");
  }
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// Forks a child that runs the writer; returns once the child has reported, through a pipe, that it is about to
// call it. The child leaves with _exit: no atexit handlers, no GoogleTest teardown, no stdio buffers flushed twice.
pid_t start_writer(const std::function<void()>& write) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  std::cout.flush();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::close(fds[0]);
    const char started = 's';
    const bool told = ::write(fds[1], &started, 1) == 1;
    ::close(fds[1]);
    if (!told) ::_exit(3);
    try {
      write();
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  char byte = 0;
  ssize_t n = 0;
  do {
    n = ::read(fds[0], &byte, 1);
  } while (n < 0 && errno == EINTR);
  ::close(fds[0]);
  if (n != 1) {
    const int status = wait_for(pid);
    throw std::runtime_error("the writer child died before starting: " + describe_status(status));
  }
  return pid;
}

enum class Found { Absent, Old, New, Neither };

// What is at the destination; `detail` says how a file that is neither OLD nor NEW differs.
Found found_at(const CrashCase& c, std::string& detail) {
  if (!std::filesystem::exists(c.dest)) return Found::Absent;
  const Bytes bytes = testing::read_bytes(c.dest);
  if (c.old_content && bytes == *c.old_content) return Found::Old;
  if (bytes == c.new_content) return Found::New;
  const auto diff = std::mismatch(bytes.begin(), bytes.end(), c.new_content.begin(), c.new_content.end());
  std::ostringstream out;
  out << "a partial or foreign file of " << bytes.size() << " bytes (old "
      << (c.old_content ? c.old_content->size() : 0) << " bytes, new " << c.new_content.size()
      << " bytes; first difference from the new at byte " << (diff.first - bytes.begin()) << ")";
  detail = out.str();
  return Found::Neither;
}

// Removes the writer's temporaries (`<dest>.tmp-` + mkstemp's six characters) and returns how many there were, so
// that 50 killed writers do not pile up hundreds of megabytes; anything else in the directory goes into `unexpected`.
int remove_temporaries(const CrashCase& c, std::vector<std::string>& unexpected) {
  const std::filesystem::path dest(c.dest);
  const std::string prefix = dest.filename().string() + ".tmp-";
  int temporaries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dest.parent_path())) {
    const std::string name = entry.path().filename().string();
    if (name == dest.filename().string()) continue;
    if (name.size() == prefix.size() + 6 && name.rfind(prefix, 0) == 0 && entry.is_regular_file()) {
      ++temporaries;
      std::filesystem::remove(entry.path());
    } else {
      unexpected.push_back(name);
    }
  }
  return temporaries;
}

// Median duration of a complete write from fork to waitpid, with the old state in place as in the trials.
Clock::duration calibrate(const CrashCase& c) {
  std::vector<Clock::duration> times;
  for (int i = 0; i < kCalibrationRuns; ++i) {
    put_old_state(c);
    const auto t0 = Clock::now();
    const pid_t pid = start_writer(c.write);
    const int status = wait_for(pid);
    times.push_back(Clock::now() - t0);
    std::string detail;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << c.name << ": " << describe_status(status);
    EXPECT_TRUE(found_at(c, detail) == Found::New) << c.name << ": a complete write did not leave the new file "
                                                   << detail;
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// The testbed: calibrates, runs kTrials killed writers, checks each outcome and prints the counts.
void run_crash_trials(const CrashCase& c) {
  ASSERT_EQ(thread_count(), 1) << "fork() without exec needs a single-threaded test process";
  const auto median = calibrate(c);
  if (::testing::Test::HasFailure()) return;
  const auto window = Micros(std::int64_t(kWindowFactor * double(std::chrono::duration_cast<Micros>(median).count())));
  std::mt19937_64 rng(kSeed);
  std::uniform_int_distribution<std::int64_t> delay_us(0, window.count());

  Outcomes out;
  bool old_in_place = false;  // calibration left NEW
  for (int trial = 0; trial < kTrials; ++trial) {
    // A destination that survived the last kill as OLD is not written again: the write would only add its bytes to
    // the next fsync's journal commit (ext4 data=ordered), which is most of a trial's time on a real disk.
    if (!old_in_place) put_old_state(c);
    const Micros delay(delay_us(rng));
    const pid_t pid = start_writer(c.write);
    std::this_thread::sleep_for(delay);
    ::kill(pid, SIGKILL);  // a child that already exited is a zombie until reaped: the pid cannot have been reused
    const int status = wait_for(pid);

    std::string detail;
    const Found found = found_at(c, detail);
    std::vector<std::string> unexpected;
    const int temporaries = remove_temporaries(c, unexpected);
    const std::string where =
        c.name + ", trial " + std::to_string(trial) + " (kill after " + std::to_string(delay.count()) + " us, child " +
        describe_status(status) + "): ";
    ASSERT_TRUE(unexpected.empty()) << where << "files other than the destination and the writer's temporaries: "
                                    << ::testing::PrintToString(unexpected);
    ASSERT_TRUE(found != Found::Neither) << where << "the destination holds " << detail;
    const bool old_state = found == (c.old_content ? Found::Old : Found::Absent);
    old_in_place = old_state;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
      if (old_state) {
        ASSERT_LE(temporaries, 1) << where;
        ++out.old_kept;
        out.old_with_temp += temporaries;
      } else {
        ASSERT_TRUE(found == Found::New) << where << "the previous file is gone but no new file replaced it";
        ASSERT_EQ(temporaries, 0) << where << "the rename happened, so no temporary can be left";
        ++out.new_complete;
      }
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << where << "the writer failed on its own";
      ASSERT_TRUE(found == Found::New) << where << "a writer that finished did not leave the new file";
      ASSERT_EQ(temporaries, 0) << where << "a writer that finished left its temporary";
      ++out.finished;
    }
  }

  std::cout << "[crash-safe] " << c.name << " (old " << (c.old_content ? c.old_content->size() : 0) << " bytes, new "
            << c.new_content.size() << " bytes): seed 0x" << std::hex << kSeed << std::dec << ", kill delays 0.."
            << window.count() << " us (" << kWindowFactor << " x the median complete write of "
            << std::chrono::duration_cast<Micros>(median).count() << " us); " << kTrials << " trials: "
            << (c.old_content ? "old kept " : "still absent ") << out.old_kept << " (" << out.old_with_temp
            << " with the writer's temporary left), new complete " << out.new_complete << ", finished before the kill "
            << out.finished << "\n";
  if (c.require_kill_mid_write) {
    EXPECT_GE(out.old_with_temp, 1)
        << c.name << ": no kill landed while the writer was writing (killed with its temporary present and the "
        << "destination still " << (c.old_content ? "OLD" : "absent") << "), so this run proved nothing about "
        << "partial files; the write is too fast for the delay window, make the content larger";
  }
}

// Tensors with random contents; `storage` owns the bytes that the TensorData spans point into.
struct Tensors {
  std::vector<Bytes> storage;
  std::vector<format::TensorData> list;
};

Tensors random_tensors(const std::vector<std::tuple<std::string, format::Dtype, std::vector<std::uint64_t>>>& specs,
                       std::uint64_t seed) {
  Tensors t;
  for (const auto& [name, dtype, shape] : specs) {
    std::uint64_t numel = 1;
    for (std::uint64_t d : shape) numel *= d;
    t.storage.push_back(testing::random_bytes(numel * std::uint64_t(format::dtype_bits(dtype)) / 8, seed++));
  }
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto& [name, dtype, shape] = specs[i];
    t.list.push_back(format::TensorData{.name = name, .dtype = dtype, .shape = shape, .data = t.storage[i]});
  }
  return t;
}

const std::map<std::string, std::string> kMetadata = {{"format", "pt"}};

// OLD: a 4 MiB shard; NEW: a 12.6 MiB one with other tensors. Large enough that a write takes milliseconds even on
// tmpfs (where fsync costs nothing), so that most kills land mid-write; no larger, since on a disk each trial's time
// is mostly the fsync of these bytes.
Tensors old_shard() {
  return random_tensors({{"model.layers.0.mlp.down_proj.weight", format::Dtype::F16, {2048, 1024}},
                         {"model.layers.0.mlp.down_proj.bias", format::Dtype::F16, {2048}}},
                        1);
}

Tensors new_shard() {
  return random_tensors({{"model.layers.0.mlp.down_proj.qweight", format::Dtype::I32, {512, 4096}},
                         {"model.layers.0.mlp.down_proj.scales", format::Dtype::F16, {64, 4096}},
                         {"model.layers.0.mlp.down_proj.qzeros", format::Dtype::I32, {64, 512}},
                         {"model.layers.0.self_attn.o_proj.weight", format::Dtype::F16, {2048, 1024}}},
                        10);
}

CrashCase safetensors_case(const testing::TempDir& dir, bool with_previous_file) {
  const Tensors old_tensors = old_shard();
  auto new_tensors = std::make_shared<Tensors>(new_shard());  // shared: the callable outlives this function
  CrashCase c;
  c.name = with_previous_file ? "format::write_file" : "format::write_file, no previous file";
  c.dest = dir.file("model.safetensors");
  if (with_previous_file) c.old_content = format::serialize(old_tensors.list, kMetadata);
  c.new_content = format::serialize(new_tensors->list, kMetadata);
  c.write = [dest = c.dest, new_tensors] { format::write_file(dest, new_tensors->list, kMetadata); };
  return c;
}

Bytes bytes_of(const std::string& text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return Bytes(p, p + text.size());
}

// A results.json-like document as the CLI writes it (dump(2) + "\n"), about 3 MiB: large enough for a write of
// several milliseconds, small enough that 50 trials stay within a few seconds.
std::string results_json(int cases, const std::string& status) {
  nlohmann::ordered_json suites = nlohmann::ordered_json::array();
  for (int s = 0; s < cases / 500; ++s) {
    nlohmann::ordered_json suite = {{"name", "suite_" + std::to_string(s)}, {"cases", nlohmann::ordered_json::array()}};
    for (int i = 0; i < 500; ++i) {
      suite["cases"].push_back({{"name", "Case" + std::to_string(i) + ".ReferenceAndCandidateAgree"},
                                {"status", status},
                                {"seconds", 0.001 * (i % 97)},
                                {"message", "max relative error 1.2e-3 within the derived tolerance 4.0e-3"}});
    }
    suites.push_back(std::move(suite));
  }
  return nlohmann::ordered_json{{"version", 1}, {"suites", std::move(suites)}}.dump(2) + "\n";
}

TEST(CrashSafeWrite, SafetensorsWriteFileKeepsOldOrNewShard) {
  testing::TempDir dir;
  run_crash_trials(safetensors_case(dir, /*with_previous_file=*/true));
}

TEST(CrashSafeWrite, SafetensorsWriteFileWithoutPreviousFileLeavesNoneOrNewShard) {
  testing::TempDir dir;
  run_crash_trials(safetensors_case(dir, /*with_previous_file=*/false));
}

TEST(CrashSafeWrite, WriteFileAtomicallyKeepsOldOrNewResultsJson) {
  testing::TempDir dir;
  auto new_text = std::make_shared<std::string>(results_json(14'000, "passed"));
  CrashCase c;
  c.name = "write_file_atomically";
  c.dest = dir.file("results.json");
  c.old_content = bytes_of(results_json(12'000, "failed"));
  c.new_content = bytes_of(*new_text);
  c.write = [dest = c.dest, new_text] { write_file_atomically(dest, *new_text); };
  run_crash_trials(c);
}

TEST(CrashSafeWrite, WriteQuantizeConfigKeepsOldOrNewConfig) {
  testing::TempDir dir;
  format::QuantizeConfig old_config;
  old_config.quantizer = {"qharness:0.1.0"};
  format::QuantizeConfig new_config = old_config;
  new_config.bits = 8;
  new_config.group_size = 64;
  new_config.desc_act = true;
  new_config.checkpoint_format = format::CheckpointFormat::GptqV2;
  new_config.dynamic = {format::DynamicRule{.pattern = ".*lm_head", .skip = true},
                        format::DynamicRule{.pattern = R"(.*mlp\.down_proj)", .bits = 4, .group_size = 128}};
  CrashCase c;
  c.name = "format::write_quantize_config";
  c.dest = dir.file("quantize_config.json");
  c.old_content = bytes_of(format::quantize_config_json(old_config));
  c.new_content = bytes_of(format::quantize_config_json(new_config));
  c.write = [dir_path = dir.path(), new_config] { format::write_quantize_config(dir_path, new_config); };
  c.require_kill_mid_write = false;
  run_crash_trials(c);
}

}  // namespace
}  // namespace qh
