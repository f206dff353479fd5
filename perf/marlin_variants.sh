#!/usr/bin/env bash
# Tuning the Marlin GEMM on a GPU box (after ci/gpu-test.sh or with .deps staged): each variant is a list of
# NAME=VALUE settings of the tuning macros of kernels/marlin_gemm.cu (QH_SMALL_STAGES, QH_SMALL_NC, QH_SMALL_BK,
# QH_SMALL_MIN_UNITS, QH_BIG_BK, QH_BIG_STAGES, QH_BIG_MIN_UNITS, QH_BLOCKS_PER_SM; kernels/marlin_repack.cu:
# QH_REPACK_WARPS); for each it rebuilds with those values, runs
# the correctness cases that cover every instantiation, then a subset of the marlin/gemm benchmark, and prints one
# line per shape: median microseconds, the fraction of the probed copy bandwidth and the ratio to cuBLAS. JSON per
# variant goes to $OUT.
#   perf/marlin_variants.sh "QH_SMALL_BK=128 QH_SMALL_STAGES=4" "QH_SMALL_BK=256 QH_SMALL_STAGES=3"
# Set QH_BENCH_FILTER to choose other shapes. The build is left at the last variant: rebuild before other work.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-build/device/out}"
mkdir -p "$out"
export CMAKE_PREFIX_PATH="$PWD/.deps/root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
filter="${QH_BENCH_FILTER:-marlin/gemm/M:(1|16|64|256)/K:(4096/N:4096|8192/N:28672|28672/N:8192)/group:128/bf16:0}"
for variant in "$@"; do
  flags="" tag=""
  for setting in $variant; do
    [[ "$setting" =~ ^QH_[A-Z_]+=[0-9]+$ ]] || { echo "bad setting '$setting' (want QH_NAME=NUMBER)" >&2; exit 2; }
    flags="$flags -D$setting"
    tag="$tag${tag:+-}$(tr 'A-Z_' 'a-z-' <<<"${setting#QH_}")"
  done
  tag=${tag:-defaults}
  cmake --preset device -DQH_PYTHON="$(command -v python3)" -DCMAKE_CUDA_FLAGS="$flags" >"$out/$tag-configure.log" 2>&1
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
    print(f"{sys.argv[2]:40s} {name:42s} {b['us_median']:8.1f} us  bw {b['bw_fraction']:.2f}  "
          f"vs_cublas {b['vs_cublas']:.2f}")
PY
done
