// When the timing helper (perf/measure.h) stops taking samples. The defaults can be changed per run with the
// bench main's flags --qh_noise=F and --qh_budget_s=S; a benchmark that needs other bounds copies and edits them.
#pragma once

namespace qh::perf {

struct Policy {
  int min_samples = 10;
  int max_samples = 2000;
  double target_noise = 0.01;       // robust relative spread: (Q3 - Q1) / 1.349 / median
  double budget_s = 1.0;            // wall time for the samples of one measurement (warm-up excluded)
  double throttle_fraction = 0.75;  // of the maximum SM clock (nvbench's default threshold)
  int warmup_calls = 2;
};

// The run's defaults (bench_main.cpp sets them from its flags before any benchmark runs).
Policy& default_policy();

}  // namespace qh::perf
