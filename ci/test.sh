#!/usr/bin/env bash
# README command 2 (and CI's): bootstrap, build, every ctest case (GPU cases skip with their reason when there is no
# GPU), then pytest for reports/ once it has tests. Each stage has a time budget; CI's whole limit is 90 minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ci/lib.sh
bootstrap_and_build
stage ctest 1200 ctest --preset default -j "$(nproc)"
if [ -d reports/tests ]; then
  stage pytest 600 python -m pytest -q reports/tests
fi
