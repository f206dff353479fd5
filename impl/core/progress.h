// Progress output for long work: a redrawn bar when stderr is a terminal, one plain line per step otherwise (CI
// logs, pipes), so a log never fills with carriage returns and a terminal never scrolls with hundreds of lines.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>

namespace qh {

class Progress {
 public:
  enum class Style { Auto, Bar, Lines, Silent };

  // `total` steps of work called `label`, written to `out` (stderr by default).
  Progress(std::string label, std::size_t total, Style style = Style::Auto, std::FILE* out = stderr);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // One step finished; `item` names it ("layer model.layers.0.q_proj", "suite safetensors_test").
  void step(const std::string& item);
  // All steps finished (also called by the destructor): ends the bar's line and prints the elapsed time.
  void finish();

  std::size_t done() const { return done_; }

 private:
  std::string label_;
  std::size_t total_;
  std::size_t done_ = 0;
  Style style_;
  std::FILE* out_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace qh
