#!/usr/bin/env bash
# Builds the CPU suites with AddressSanitizer + UndefinedBehaviorSanitizer (the `asan` preset: GCC, QH_CUDA=OFF, no
# benchmarks) and runs every cpu-labelled ctest case under them. The first report of either stops the process
# (halt_on_error, and -fno-sanitize-recover=all at compile time), so the script fails on any finding; leaks at
# exit are findings too. CI runs it from ci/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ci/lib.sh
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
QH_VENV="$(ci/bootstrap.sh | sed -n 's/^QH_VENV=//p')"
export QH_VENV PATH="$QH_VENV/bin:$PATH"
stage asan-configure 600 cmake --preset asan -DQH_PYTHON="$QH_VENV/bin/python3"
stage asan-build 3600 cmake --build --preset asan -j "$(nproc)"
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
stage asan-ctest 2400 ctest --test-dir build/asan -L cpu -j "$(nproc)" --output-on-failure
