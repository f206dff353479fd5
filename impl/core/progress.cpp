#include "impl/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

namespace qh {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Progress::Progress(std::string label, std::size_t total, Style style, std::FILE* out)
    : label_(std::move(label)), total_(total), style_(style), out_(out), start_(std::chrono::steady_clock::now()) {
  if (style_ == Style::Auto) style_ = isatty(fileno(out_)) ? Style::Bar : Style::Lines;
}

Progress::~Progress() { finish(); }

void Progress::step(const std::string& item) {
  ++done_;
  const double t = seconds_since(start_);
  if (style_ == Style::Lines) {
    std::fprintf(out_, "[%s] %zu/%zu %s (%.1f s)\n", label_.c_str(), done_, total_, item.c_str(), t);
  } else if (style_ == Style::Bar) {
    constexpr int kWidth = 30;
    const double frac = total_ ? std::min(1.0, double(done_) / double(total_)) : 1.0;
    const int filled = int(frac * kWidth);
    std::string bar(std::size_t(filled), '#');
    bar.resize(kWidth, '.');
    // \r redraws the line; \033[K clears what a longer previous item left behind.
    std::fprintf(out_, "\r[%s] [%s] %zu/%zu %s (%.1f s)\033[K", label_.c_str(), bar.c_str(), done_, total_,
                 item.c_str(), t);
  }
  std::fflush(out_);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (style_ == Style::Silent) return;
  if (style_ == Style::Bar) std::fputc('\n', out_);
  std::fprintf(out_, "[%s] %zu/%zu done in %.1f s\n", label_.c_str(), done_, total_, seconds_since(start_));
  std::fflush(out_);
}

}  // namespace qh
