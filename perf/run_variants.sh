#!/usr/bin/env bash
# On a GPU box, times the kernel variants that perf/build_variant.sh built on the CI machine against the default
# build, in one process each and one call: for the default binaries and every build/variants/TAG given (all when
# none is), the Marlin GPU cases of its qh_tests first (QH_VARIANT_TESTS, a gtest filter, default GpuMarlin*; a
# variant that fails them is reported and not timed), then its qh_quant_linear_bench on QH_BENCH_FILTER (default:
# every Marlin GEMM and repack shape, fp16 group 128, and cuBLAS for vs_cublas). A side-by-side table (median us,
# and each variant's time over the default's) goes to stdout; $OUT (the device tool's output folder, which brings
# back 8 files) or build/variants/out gets one JSON per variant and the test log of a variant that failed. It needs
# qh_tests, qh_quant_linear_bench (and build/default/bin/qh_suites.json) of the default build and of each variant,
# and .deps: build/default/bin alone is 39 MB and a variant 19 MB (2026-12-07), over the device tool's 64 MiB beside
# .deps, so carry those binaries as one .tar.gz (~20 MB with two variants) and unpack it on the box first.
#   perf/run_variants.sh [TAG ...]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source ci/gpu-prebuilt.sh || exit 2
out="${OUT:-build/variants/out}"
mkdir -p "$out"
logs=$(mktemp -d)
tests="${QH_VARIANT_TESTS:-GpuMarlin*}"
filter="${QH_BENCH_FILTER:-^(marlin/gemm/.*group:128/bf16:0|marlin/repack|cublas/gemm/.*bf16:0)}"
tags=("$@")
if [ ${#tags[@]} -eq 0 ]; then
  for dir in build/variants/*/; do [ -x "$dir/qh_tests" ] && tags+=("$(basename "$dir")"); done
fi
export QH_DEVICE=cuda
timed=()
for tag in default "${tags[@]}"; do
  dir=build/variants/$tag
  [ "$tag" = default ] && dir=$QH_BIN
  [ -x "$dir/qh_tests" ] && [ -x "$dir/qh_quant_linear_bench" ] || { echo "$tag: no binaries in $dir" >&2; continue; }
  if ! "$dir/qh_tests" --gtest_filter="$tests" >"$logs/$tag-tests.log" 2>&1; then
    cp "$logs/$tag-tests.log" "$out/"
    echo "$tag: $tests FAILED, not timed ($out/$tag-tests.log)"
    grep -E "^\[  FAILED  \]" "$logs/$tag-tests.log" | head -5
    continue
  fi
  "$dir/qh_quant_linear_bench" --benchmark_filter="$filter" --benchmark_out="$out/$tag.json" \
    --benchmark_out_format=json >"$logs/$tag-bench.log" 2>&1 ||
    { echo "$tag: benchmark failed:" >&2; tail -5 "$logs/$tag-bench.log" >&2; continue; }
  timed+=("$tag")
done
python3 - "$out" "${timed[@]}" <<'PY'
import json, os, sys
out, tags = sys.argv[1], sys.argv[2:]
runs = {}
for tag in tags:
    with open(os.path.join(out, tag + ".json")) as f:
        runs[tag] = {b["name"].replace("/iterations:1/manual_time", ""): b["us_median"]
                     for b in json.load(f)["benchmarks"] if not b["name"].startswith("cublas")}
if "default" not in runs:
    sys.exit("run_variants: the default binaries were not timed")
print(f"{'benchmark':52s} {'default us':>10s} " + " ".join(f"{t:>14s}" for t in tags if t != "default"))
for name, base in runs["default"].items():
    cells = [f"{runs[t][name]:7.1f} {runs[t][name] / base:5.2f}x" if name in runs[t] else f"{'-':>14s}"
             for t in tags if t != "default"]
    print(f"{name:52s} {base:10.1f} " + " ".join(cells))
PY
