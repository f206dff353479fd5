#!/usr/bin/env bash
# The benchmark suite on a GPU box (no internet): builds the `device` preset like ci/gpu-test.sh, then runs
# `qharness bench --set SET` (default full): every perf/ binary with its GPU probes, Google Benchmark JSON with
# context.qharness per binary and the merged bench/results.json, all in $OUT (the device tool's output folder) or
# build/device/out. Extra arguments go to `qharness bench` (e.g. --filter REGEX).
#   ci/gpu-bench.sh [SET] [qharness bench options...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ci/lib.sh
out="${OUT:-build/device/out}"
mkdir -p "$out"
set_name=${1:-full}
shift || true
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.sm,temperature.gpu,power.draw \
  --format=csv | tee "$out/gpu.txt"
device_build "$out"
t0=$SECONDS
build/device/bin/qharness bench --set "$set_name" --out "$out" "$@" 2>&1 | tee "$out/bench.log"
echo "bench: $((SECONDS - t0)) s"
