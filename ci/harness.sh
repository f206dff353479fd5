#!/usr/bin/env bash
# README command 1: bootstrap, build, and run `qharness run` on the built-in fixtures. Writes
# reports/out/results.json, reports/out/report.html and summary.json; extra arguments go to `qharness run`
# (e.g. --device cpu).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ci/lib.sh
bootstrap_and_build
stage "qharness run" 1800 build/default/bin/qharness run --out reports/out "$@"
