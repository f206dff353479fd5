#!/usr/bin/env bash
# Tuning the Marlin GEMM on a GPU box (after ci/gpu-test.sh or with .deps staged): for each variant
# "SMALL_STAGES BIG_BK BIG_STAGES" (the tuning macros of kernels/marlin_gemm.cu), rebuild with those values, run the
# correctness cases that cover every instantiation, then a subset of the marlin/gemm benchmark, and print one line
# per shape: median microseconds and the fraction of the probed copy bandwidth. JSON per variant goes to $OUT.
#   perf/marlin_variants.sh "4 64 4" "8 128 6"
# Set QH_BENCH_FILTER to choose other shapes. The build is left at the last variant: rebuild before other work.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-build/device/out}"
mkdir -p "$out"
export CMAKE_PREFIX_PATH="$PWD/.deps/root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
filter="${QH_BENCH_FILTER:-marlin/gemm/M:(16|64|256)/K:(4096/N:4096|8192/N:28672|28672/N:8192)/group:128/bf16:0}"
for variant in "$@"; do
  read -r small bk big <<<"$variant"
  tag="stages$small-bk$bk-big$big"
  cmake --preset device -DQH_PYTHON="$(command -v python3)" \
    -DCMAKE_CUDA_FLAGS="-DQH_SMALL_STAGES=$small -DQH_BIG_BK=$bk -DQH_BIG_STAGES=$big" >"$out/$tag-configure.log" 2>&1
  cmake --build --preset device -j "$(nproc)" --target qh_tests qh_quant_linear_bench >"$out/$tag-build.log" 2>&1 ||
    { grep -E "error" -A3 "$out/$tag-build.log" | head -20; exit 1; }
  QH_DEVICE=cuda build/device/bin/qh_tests \
    --gtest_filter='GpuMarlinGemm.EveryInstantiationRuns:GpuMarlinGemm.ShapesIncludingPaddedOnes' >"$out/$tag-test.log" 2>&1 ||
    { echo "$tag: correctness FAILED"; tail -20 "$out/$tag-test.log"; exit 1; }
  build/device/bin/qh_quant_linear_bench --benchmark_filter="$filter" --benchmark_min_time=0.05 \
    --benchmark_out="$out/$tag.json" --benchmark_out_format=json >/dev/null 2>&1
  python3 - "$out/$tag.json" "$tag" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    name = b["name"].replace("marlin/gemm/", "").replace("/manual_time", "")
    print(f"{sys.argv[2]:22s} {name:42s} {b['us_median']:8.1f} us  bw {b['bw_fraction']:.2f}  "
          f"vs_cublas {b['vs_cublas']:.2f}")
PY
done
