#!/usr/bin/env bash
# Builds and tests on a GPU box (no internet): the `device` preset (sm_90a) against the python3 on PATH (its torch
# provides LibTorch) and the Debian packages staged by ci/stage-deps.sh in .deps/. Runs every ctest case (GPU
# cases included, which must not skip: QH_DEVICE=cuda), the Python package's tests (impl/ops/python/tests, CUDA
# cases included) and `qharness run --device cuda` (which runs the quick benchmark set); logs and results.json go
# to $OUT when set (the device tool's output folder), else build/device/out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ci/lib.sh
out="${OUT:-build/device/out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
device_build "$out"
python3 ci/check_sass.py build/device/kernels/libqh_kernels.a --arch sm_90a | tee "$out/sass.txt"
export QH_DEVICE=cuda
ctest --preset device -j 4 2>&1 | tee "$out/ctest.log" | tail -15
# The Python package's CUDA cases (ops on CUDA tensors, MarlinLinear under torch.compile with inductor) against
# build/device/lib/libqh_ops.so.
python3 -m pytest -q impl/ops/python/tests 2>&1 | tee "$out/pytest-ops.log" | tail -5
build/device/bin/qharness run --device cuda --out build/device/run | tee "$out/run.log"
cp build/device/run/results.json "$out/results.json"
