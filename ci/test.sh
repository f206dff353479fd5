#!/usr/bin/env bash
# README command 2 (and CI's): bootstrap, build, every ctest case (GPU cases skip with their reason when there is no
# GPU), the SASS check of every shipped kernel (sm_80 and sm_90a, ci/check_sass.py), pytest for ci/, reports/ and
# the Python package, the CPU instruction-count gate, a short libFuzzer pass (ci/fuzz.sh), then the CPU suites under
# ASan + UBSan (ci/sanitize.sh). Each stage has a time budget; CI's whole limit is 90 minutes (about 25 with a warm
# ccache on 2 cores; a cold cache pays for the three builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ci/lib.sh
bootstrap_and_build
stage ctest 1200 ctest --preset default -j "$(nproc)"
if [ -f build/default/kernels/libqh_kernels.a ]; then
  stage sass 300 python ci/check_sass.py build/default/kernels/libqh_kernels.a --arch sm_80 --arch sm_90a
fi
# pytest: the ci scripts, reports (the HTML report rendered by headless Chromium) and the Python package over
# libqh_ops.so (impl/ops/python/tests; its CUDA cases skip with the reason without a GPU).
stage pytest 900 python -m pytest -q ci/tests reports/tests impl/ops/python/tests
# CPU performance without a GPU: instructions per call of torch-free benchmarks under callgrind (exact for one build,
# so +2 % is a real change, docs/benchmarks.md) against the committed baseline.
QH_INSTRUCTION_FILTER='safetensors/parse_header/tensors:(16|1024)$|gptq/(pack|unpack)/bits:(3|4)/'
stage instructions 900 python perf/cpu_instructions.py build/default/bin/qh_format_bench \
  --filter "$QH_INSTRUCTION_FILTER" --out build/default/cpu-instructions.json
stage instruction-gate 60 env PYTHONPATH=reports python -m qh_report instructions \
  --baseline fixtures/baselines/cpu-instructions.json --current build/default/cpu-instructions.json
# The short fuzz pass: 30 s per target (the two parsers and the verifier). A fixed seed, so a CI failure replays.
QH_FUZZ_SEED=1 stage fuzz 2400 ci/fuzz.sh 30
# Every cpu-labelled ctest case again, built with AddressSanitizer + UndefinedBehaviorSanitizer (~4 min of tests).
stage sanitize 3600 ci/sanitize.sh
