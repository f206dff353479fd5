#!/usr/bin/env bash
# Builds a variant of the Marlin kernels on this machine, so that a GPU box only runs it (device time is short and
# a build there takes minutes): kernels/marlin_gemm.cu and kernels/marlin_repack.cu are compiled for sm_90a from a
# copy of the tree with the given patches applied and macros set, swapped into a copy of build/default's kernel
# library, and qh_quant_linear_bench and qh_tests are relinked with it as build/variants/TAG/. Build the default
# preset first. On the box, carry build/variants with build/default/bin, build/default/lib and .deps,
# and run perf/run_variants.sh (each variant's GpuMarlin* cases, then its benchmarks beside the default build's).
# QH_VARIANT_BASE names another build folder to start from (ci/gpu-test.sh: build/device, on the GPU box).
#   perf/build_variant.sh TAG [PATCH.patch ...] [-DQH_NAME=VALUE ...]
# e.g. perf/build_variant.sh lop3 my-change.patch   (a `git diff` of kernel changes to time before committing them)
#      perf/build_variant.sh bk128 -DQH_SMALL_BK=128 -DQH_SMALL_STAGES=4   (the tuning macros of the two kernels)
#      perf/build_variant.sh mma -DQH_WGMMA_MIN_M=1000000   (every m on mma.sync: the wgmma path's comparison)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
build=$root/${QH_VARIANT_BASE:-build/default}
[ $# -ge 1 ] || { sed -n '2,11p' "${BASH_SOURCE[0]}" >&2; exit 2; }
tag=$1
shift
[[ "$tag" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "build_variant: TAG must be letters, digits, - or _ (got '$tag')" >&2; exit 2; }
[ -f "$build/kernels/libqh_kernels.a" ] || { echo "build_variant: no $build/kernels/libqh_kernels.a: build that preset first" >&2; exit 2; }
# The CUDA compiler the base build was configured with (the GPU box's need not be at /usr/local/cuda).
nvcc=$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
[ -x "$nvcc" ] || { echo "build_variant: no CUDA compiler in $build/CMakeCache.txt (got '$nvcc')" >&2; exit 2; }
cuda_include=$(dirname "$(dirname "$(readlink -f "$nvcc")")")/include
patches=() flags=()
for arg in "$@"; do
  case "$arg" in
    -DQH_*=*) flags+=("$arg") ;;
    *.patch) [ -f "$arg" ] || { echo "build_variant: no patch $arg" >&2; exit 2; }; patches+=("$root/$arg") ;;
    *) echo "build_variant: '$arg' is neither a .patch nor -DQH_NAME=VALUE" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cp -r "$root/kernels" "$work/src/kernels"
for patch in "${patches[@]+"${patches[@]}"}"; do
  (cd "$work/src" && git apply --include='kernels/*' "$patch") || { echo "build_variant: $patch does not apply" >&2; exit 1; }
done
out=$root/build/variants/$tag
mkdir -p "$out"
cp "$build/kernels/libqh_kernels.a" "$work/libqh_kernels.a"
for unit in marlin_gemm marlin_repack; do
  # The copy's headers first, then the tree's (kernels.h may be patched too).
  "$nvcc" -I"$work/src" -I"$root" -isystem="$cuda_include" -O3 -DNDEBUG \
    --generate-code=arch=compute_90a,code=[compute_90a,sm_90a] -Xcompiler=-fPIC -std=c++17 \
    "${flags[@]+"${flags[@]}"}" -Xptxas -v -x cu -c "$work/src/kernels/$unit.cu" -o "$work/$unit.cu.o" \
    2>"$out/ptxas-$unit.txt" || { cat "$out/ptxas-$unit.txt" >&2; exit 1; }
  (cd "$work" && ar r libqh_kernels.a "$unit.cu.o")
done
# Relink with ninja's own link lines, the kernel library swapped for the variant's.
for target in qh_quant_linear_bench qh_tests; do
  line=$(cd "$build" && ninja -t commands "bin/$target" | tail -1)
  [[ "$line" == *" kernels/libqh_kernels.a "* && "$line" == *"-o bin/$target "* ]] ||
    { echo "build_variant: unexpected link line for $target" >&2; exit 1; }
  line=${line/ kernels\/libqh_kernels.a / $work/libqh_kernels.a }
  line=${line/-o bin\/$target /-o $out/$target }
  (cd "$build" && eval "${line#: && }") || { echo "build_variant: linking $target failed" >&2; exit 1; }
done
grep -h "Used" "$out"/ptxas-*.txt | sort | uniq -c
echo "build_variant: $out/{qh_quant_linear_bench,qh_tests} (patches: ${#patches[@]}, flags: ${flags[*]-none})"
