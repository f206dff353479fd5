#!/usr/bin/env bash
# README command 2 (and CI's): bootstrap, build, every ctest case (GPU cases skip with their reason when there is no
# GPU), the SASS check of every shipped kernel (sm_80 and sm_90a, ci/check_sass.py), pytest for ci/ and reports/,
# a short libFuzzer pass (ci/fuzz.sh), then the CPU suites under ASan + UBSan (ci/sanitize.sh). Each stage has a
# time budget; CI's whole limit is 90 minutes (about 25 with a warm ccache on 2 cores; the two sanitizer builds are
# what a cold cache pays for).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ci/lib.sh
bootstrap_and_build
stage ctest 1200 ctest --preset default -j "$(nproc)"
if [ -f build/default/kernels/libqh_kernels.a ]; then
  stage sass 300 python ci/check_sass.py build/default/kernels/libqh_kernels.a --arch sm_80 --arch sm_90a
fi
stage pytest 600 python -m pytest -q ci/tests $([ -d reports/tests ] && echo reports/tests)
# The short fuzz pass: 30 s per target (the two parsers and the verifier). A fixed seed, so a CI failure replays.
QH_FUZZ_SEED=1 stage fuzz 2400 ci/fuzz.sh 30
# Every cpu-labelled ctest case again, built with AddressSanitizer + UndefinedBehaviorSanitizer (~4 min of tests).
stage sanitize 3600 ci/sanitize.sh
