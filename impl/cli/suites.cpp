#include "impl/cli/suites.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "impl/core/errors.h"

extern char** environ;

namespace qh::cli {

namespace {

using nlohmann::ordered_json;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

double seconds_of(const std::string& gtest_time) {  // "0.012s"
  try {
    return std::stod(gtest_time);
  } catch (const std::exception&) {
    return 0.0;
  }
}

// gtest 1.12's JSON has no skip message; its console prints "<file>:<line>: Skipped\n<message>\n" before
// "[  SKIPPED ] Suite.Case". Returns the message per case.
std::map<std::string, std::string> skip_messages(const std::string& console) {
  std::map<std::string, std::string> out;
  std::istringstream in(console);
  std::string line, current, message;
  bool in_skip = false;
  while (std::getline(in, line)) {
    if (line.rfind("[ RUN      ] ", 0) == 0) {
      current = line.substr(13);
      message.clear();
      in_skip = false;
    } else if (line.rfind("[  SKIPPED ] ", 0) == 0 && line.find(current) != std::string::npos) {
      out[current] = message;
      in_skip = false;
    } else if (line.size() >= 9 && line.compare(line.size() - 9, 9, ": Skipped") == 0) {
      in_skip = true;
    } else if (in_skip) {
      message += (message.empty() ? "" : "\n") + line;
    }
  }
  return out;
}

// The last "[ RUN ]" case with no result line after it: the one running when the binary died.
std::string unfinished_case(const std::string& console) {
  std::istringstream in(console);
  std::string line, running;
  while (std::getline(in, line)) {
    if (line.rfind("[ RUN      ] ", 0) == 0) running = line.substr(13);
    else if (line.rfind("[       OK ] ", 0) == 0 || line.rfind("[  FAILED  ] ", 0) == 0 ||
             line.rfind("[  SKIPPED ] ", 0) == 0)
      running.clear();
  }
  return running;
}

std::string tail(const std::string& text, std::size_t max_chars) {
  return text.size() <= max_chars ? text : "..." + text.substr(text.size() - max_chars);
}

}  // namespace

std::vector<Suite> read_suite_manifest(const std::string& manifest_path) {
  std::ifstream in(manifest_path);
  if (!in) {
    throw IoError(Where{.file = manifest_path}, "cannot read the suite manifest written by the build",
                  "bin/qh_suites.json next to the qharness binary (build the project first)", errno_text(errno));
  }
  std::vector<Suite> suites;
  try {
    const auto doc = nlohmann::json::parse(in);
    for (const auto& entry : doc) suites.push_back({entry.at("name").get<std::string>(), entry.at("path")});
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(Where{.file = manifest_path}, "the suite manifest must be a list of {name, path}",
                      "valid JSON", e.what());
  }
  return suites;
}

int run_process(const std::vector<std::string>& args, const std::string& console_path,
                const std::map<std::string, std::string>& env) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    if (!env.count(kv.substr(0, kv.find('=')))) env_strings.push_back(kv);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<std::string> arg_strings = args;
  std::vector<char*> argv, envp;
  for (auto& a : arg_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!console_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, 1, console_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  }
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, args.front().c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    throw IoError(Where{.file = args.front()}, "cannot start the program", "an executable (rebuild the project)",
                  errno_text(rc));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

SuiteRun run_suite(const Suite& suite, const std::string& work_dir, const std::map<std::string, std::string>& env) {
  SuiteRun run;
  run.gtest_json_path = work_dir + "/" + suite.name + ".json";
  const std::string console_path = work_dir + "/" + suite.name + ".log";
  ::unlink(run.gtest_json_path.c_str());
  run.exit_code = run_process({suite.path, "--gtest_output=json:" + run.gtest_json_path, "--gtest_color=no"},
                              console_path, env);
  run.console = read_text(console_path);
  return run;
}

ordered_json checks_from_run(const Suite& suite, const SuiteRun& run) {
  ordered_json checks = ordered_json::array();
  nlohmann::json report;
  std::ifstream in(run.gtest_json_path);
  bool have_report = false;
  if (in) {
    try {
      report = nlohmann::json::parse(in);
      have_report = true;
    } catch (const nlohmann::json::exception&) {
    }
  }
  if (have_report) {
    const auto skips = skip_messages(run.console);
    for (const auto& group : report.value("testsuites", nlohmann::json::array())) {
      for (const auto& test : group.value("testsuite", nlohmann::json::array())) {
        const std::string name = group.value("name", "") + "." + test.value("name", "");
        std::string status = "pass", message;
        if (test.contains("failures")) {
          status = "fail";
          for (const auto& f : test["failures"]) message += (message.empty() ? "" : "\n") + f.value("failure", "");
        } else if (test.value("result", "") == "SKIPPED" || test.value("status", "") == "NOTRUN") {
          status = "skip";
          const auto it = skips.find(name);
          message = it != skips.end() ? it->second : "disabled";
        }
        ordered_json details = {{"file", test.value("file", "")}, {"line", test.value("line", 0)}};
        if (test.contains("value_param")) details["param"] = test["value_param"];
        checks.push_back({{"name", name}, {"suite", suite.name}, {"status", status},
                          {"duration_s", seconds_of(test.value("time", "0s"))}, {"message", message},
                          {"details", details}});
      }
    }
  }
  // A crash after some cases passed still leaves a report of nothing, or a stale one: say which case died.
  if (!have_report || (run.exit_code != 0 && run.exit_code != 1)) {
    const std::string running = unfinished_case(run.console);
    std::string message = "test binary exited with status " + std::to_string(run.exit_code);
    if (run.exit_code > 128) message += " (killed by signal " + std::to_string(run.exit_code - 128) + ")";
    if (!running.empty()) message += " while running " + running;
    if (!have_report) message += "; it wrote no gtest report";
    checks.push_back({{"name", suite.name + (running.empty() ? "" : "/" + running)},
                      {"suite", suite.name},
                      {"status", "error"},
                      {"duration_s", 0.0},
                      {"message", message},
                      {"details", {{"console_tail", tail(run.console, 4000)}}}});
  }
  return checks;
}

}  // namespace qh::cli
