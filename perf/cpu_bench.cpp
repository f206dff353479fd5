#include "perf/cpu_bench.h"

#include <cstdio>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define QH_UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#else  // a GPU box without valgrind's headers: never under valgrind there
#define QH_UNDER_VALGRIND() false
#endif

// Outside any namespace and not inlined, so callgrind's --toggle-collect=qh_callgrind_region finds it by name.
extern "C" __attribute__((noinline)) void qh_callgrind_region(const std::function<void()>* work) {
  for (int i = 0; i < qh::perf::kCallgrindReps; ++i) (*work)();
}

namespace qh::perf {

void cpu_benchmark(benchmark::State& state, const std::function<void()>& work) {
  static bool counted = false;  // one benchmark per process under valgrind (cpu_instructions.py filters to one)
  if (QH_UNDER_VALGRIND() && !counted) {
    counted = true;
    std::fprintf(stderr, "qh_callgrind_reps=%d\n", kCallgrindReps);  // perf/cpu_instructions.py divides by it
    qh_callgrind_region(&work);
  }
  for (auto _ : state) work();
}

}  // namespace qh::perf
