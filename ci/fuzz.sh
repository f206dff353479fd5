#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang, ASan + UBSan, conformance/fuzz), makes seed corpora from
# the fixtures (ci/fuzz_seeds.py) and runs every target for a bounded time. Any crash, leak, timeout, undefined
# behaviour or broken property (conformance/fuzz/fuzz_checks.h) fails the script, with the input saved under
# build/fuzz/findings/<target>/; turn it into a regression input in fixtures/malformed/<target>/, which every run
# replays.
#   ci/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default 30 s each, every target (CI's short pass)
#   QH_FUZZ_RUNS=10000000 ci/fuzz.sh 0 fuzz_configs  a fixed number of executions instead of a time
#   QH_FUZZ_SEED=1 ...                               libFuzzer's random seed (default: from the clock)
# Corpora grow in build/fuzz/corpus/<target> and are reused by the next run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_configs fuzz_verify)

export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
QH_VENV="$(ci/bootstrap.sh | sed -n 's/^QH_VENV=//p')"
mkdir -p build
cmake --preset fuzz -DQH_PYTHON="$QH_VENV/bin/python3" > build/fuzz-configure.log 2>&1 ||
  { cat build/fuzz-configure.log; exit 1; }
cmake --build --preset fuzz -j "$(nproc)" --target "${targets[@]}"

work=build/fuzz
rm -rf "$work/seeds"
"$QH_VENV/bin/python" ci/fuzz_seeds.py "$work/seeds"
# A leak, a timeout (10 s for one input) or a 4 GiB footprint is a finding like a crash.
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/findings/$t"
  limit=(-max_total_time="$seconds")
  [ -z "${QH_FUZZ_RUNS:-}" ] || limit=(-runs="$QH_FUZZ_RUNS")
  echo "== $t (${QH_FUZZ_RUNS:+$QH_FUZZ_RUNS executions}${QH_FUZZ_RUNS:-$seconds s})"
  rc=0
  "build/fuzz/bin/$t" "${limit[@]}" -seed="${QH_FUZZ_SEED:-0}" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$work/findings/$t/" "$work/corpus/$t" "$work/seeds/$t" > "$work/$t.log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
  echo "   $t: exit $rc, ${execs:-?} executions, corpus $(ls "$work/corpus/$t" | wc -l) inputs, log $work/$t.log"
  if [ "$rc" != 0 ]; then
    grep -E "ERROR|property violated|SUMMARY|Test unit written" "$work/$t.log" | head -20 >&2
    status=1
  fi
done
exit $status
