#!/usr/bin/env bash
# compute-sanitizer over the GPU cases of our kernels on a GPU box, after ci/gpu-test.sh has built build/device:
# memcheck (out-of-bounds and misaligned accesses), racecheck (shared-memory hazards) and initcheck (reads of
# uninitialized device memory). Torch's caching allocator is off (PYTORCH_NO_CUDA_MEMORY_CACHING=1): a pool hides
# out-of-bounds accesses inside its blocks. memcheck and racecheck instrument only our kernels (--kernel-name kns=qh:
# every kernel of ours lives in namespace qh::kernels), so cuBLAS and ATen run at full speed; initcheck instruments
# everything, because memory written by a kernel it does not instrument reads as uninitialized to it (with the
# filter it reported 70,000 false findings on torch's own item() copies). Exit 1 on any finding; logs go to $OUT
# (the device tool's output folder) or build/device/out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-build/device/out}"
bin="${QH_BIN:-build/device/bin}"
mkdir -p "$out"
[ -x "$bin/qh_tests" ] || { echo "no $bin/qh_tests: run ci/gpu-test.sh first" >&2; exit 2; }
# The GEMM cases run every instantiation, stream-K grids (1 block, 3 blocks, the plan's), padding, act-order; the
# layout and materialization cases run the repack; the dequantize, checksum, GPTQ sweep and Hessian stress cases the
# other kernels (the stress: its first 90 cases, every pathology 10 times, K <= 256). The perf probes' test is not
# among them: under memcheck its instrumented copy and read kernels run ~20x slower, and the probes' own sanity check
# refuses the result by design (H200, 2026-12-01: "the L2 read probe is slower than the DRAM copy ... found 242 GB/s"),
# which says nothing about memory safety (that run's memcheck found 0 errors in the probe kernels it had run).
export PYTORCH_NO_CUDA_MEMORY_CACHING=1 QH_DEVICE=cuda QH_STRESS_CASES=90 QH_STRESS_MAX_K=256
gptq='Sweep/GpuGptqOptimized.AgreesWithReference/40x320_b8_g64_sym_act_blk96:*/GpuGptqOptimized.*17x200*'
all="GpuMarlinGemm.*:GpuMarlinLayout.*:GpuMetaMaterialization.*:GpuQuantLinear.*:GpuBiasRoundtrip.*:GpuSafetensors*"
all="$all:$gptq:GpuGptqOptimized.*:GpuHessianStress.*"
quick="GpuMarlinGemm.EveryInstantiationRuns:GpuMarlinGemm.Deterministic:GpuMarlinGemm.ShapesIncludingPaddedOnes"
quick="$quick:GpuMarlinLayout.*:$gptq"
status=0
for tool in memcheck racecheck initcheck; do
  filter=$([ "$tool" = memcheck ] && echo "$all" || echo "$quick")
  t0=$SECONDS
  only=$([ "$tool" = initcheck ] || echo "--kernel-name kns=qh")
  # shellcheck disable=SC2086
  if compute-sanitizer --tool "$tool" --error-exitcode 1 $only \
      "$bin/qh_tests" --gtest_filter="$filter" >"$out/sanitize-$tool.log" 2>&1; then
    result=clean
  else
    result=FAILED
    status=1
  fi
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|tests? ran|PASSED|FAILED" "$out/sanitize-$tool.log" | tr '\n' ' ')
  echo "$tool: $result in $((SECONDS - t0)) s: $summary"
done
exit $status
