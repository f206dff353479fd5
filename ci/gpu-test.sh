#!/usr/bin/env bash
# Builds and tests on a GPU box (no internet): the `device` preset (sm_90a) against the python3 on PATH (its torch
# provides LibTorch) and the Debian packages staged by ci/stage-deps.sh in .deps/. Runs every ctest case (GPU
# cases included, which must not skip: QH_DEVICE=cuda), the Python package's tests (impl/ops/python/tests, CUDA
# cases included), the Marlin GPU cases once more on a build whose stream-K spread sum never waits (below), and
# `qharness run --device cuda` (which runs the quick benchmark set); logs and results.json go to $OUT when set (the
# device tool's output folder), else build/device/out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ci/lib.sh
out="${OUT:-build/device/out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
device_build "$out"
python3 ci/check_sass.py build/device/kernels/libqh_kernels.a --arch sm_90a | tee "$out/sass.txt"
# The spread sum's time-out path (kernels/marlin_gemm_common.cuh: a block that waited QH_SPREAD_WAIT_NS for the
# tile's other blocks gives up, the last to arrive sums its share) runs in the real build only when a block is slow.
# With QH_SPREAD_WAIT_NS=0 every waiter gives up at once, so every spread tile takes it; built beside ctest. Its
# log stays in build/device and its test log joins ctest.log: the device tool brings back 8 files of $OUT.
QH_VARIANT_BASE=build/device perf/build_variant.sh spread-timeout -DQH_SPREAD_WAIT_NS=0 >build/device/variant.log 2>&1 &
variant=$!
export QH_DEVICE=cuda
ctest --preset device -j 4 2>&1 | tee "$out/ctest.log" | tail -15
wait "$variant" || { tail -20 build/device/variant.log; exit 1; }
build/variants/spread-timeout/qh_tests --gtest_filter='GpuMarlinGemm.*' 2>&1 | tee -a "$out/ctest.log" | tail -3
# The Python package's CUDA cases (ops on CUDA tensors, MarlinLinear under torch.compile with inductor) against
# build/device/lib/libqh_ops.so.
python3 -m pytest -q impl/ops/python/tests 2>&1 | tee "$out/pytest-ops.log" | tail -5
build/device/bin/qharness run --device cuda --out build/device/run | tee "$out/run.log"
cp build/device/run/results.json "$out/results.json"
