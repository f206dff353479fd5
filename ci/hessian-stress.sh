#!/usr/bin/env bash
# The full numeric stress of conformance/hessian_stress_test.cpp: QH_STRESS_CASES (default 10000) pathological
# Hessians with K up to QH_STRESS_MAX_K (default 4096) through the CPU reference and, where a GPU is present, the
# CUDA path; CI runs only the first cases. The cases are split over PROCESSES shards (default nproc / 2, two torch
# threads each); every shard's log goes to LOG_DIR, and the per-pathology tables are summed at the end.
#   ci/hessian-stress.sh BIN_DIR [PROCESSES] [LOG_DIR]     e.g. ci/hessian-stress.sh build/device/bin 8 "$OUT/stress"
set -euo pipefail
bin=${1:?usage: ci/hessian-stress.sh BIN_DIR [PROCESSES] [LOG_DIR]}
procs=${2:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
logs=${3:-build/hessian-stress}
mkdir -p "$logs"
export QH_STRESS_CASES=${QH_STRESS_CASES:-10000} QH_STRESS_MAX_K=${QH_STRESS_MAX_K:-4096} OMP_NUM_THREADS=2
echo "hessian stress: $QH_STRESS_CASES cases, K up to $QH_STRESS_MAX_K, $procs shards -> $logs"
pids=()
for ((i = 0; i < procs; i++)); do
  QH_STRESS_SHARD="$i/$procs" "$bin/qh_tests" --gtest_filter='*HessianStress*' > "$logs/shard-$i.log" 2>&1 &
  pids+=($!)
done
status=0
for ((i = 0; i < procs; i++)); do
  wait "${pids[$i]}" || { status=1; echo "shard $i failed: $logs/shard-$i.log"; }
done
# Sum the shards' tables: path -> pathology -> recovered refused failed, max worst error, max slowest.
table=$(awk '
  /^(reference|optimized) \(/ { path = $1 " " $2; next }
  path != "" && NF == 7 && $2 ~ /^[0-9]+$/ {
    k = path "|" $1; rec[k] += $2; ref[k] += $3; bad[k] += $4
    if ($5 + 0 > worst[k]) worst[k] = $5 + 0
    s = $6; sub(/s$/, "", s); if (s + 0 > slow[k]) slow[k] = s + 0
  }
  END {
    for (k in rec) { split(k, p, "|")
      printf "%-18s %-20s %9d %7d %6d %12.3g %8.2fs\n", p[1], p[2], rec[k], ref[k], bad[k], worst[k], slow[k] }
  }' "$logs"/shard-*.log | sort)
{ printf "%-18s %-20s %9s %7s %6s %12s %9s\n" path pathology recovered refused failed "worst error" slowest
  echo "$table"; } | tee "$logs/summary.txt"
grep -h "Failure\|: case " "$logs"/shard-*.log | head -40 || true
exit $status
