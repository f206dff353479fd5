# Sourced on a GPU box to run binaries built on the CI machine instead of building there (the default preset
# compiles sm_80 and sm_90a, so build/default/bin runs on an H100/H200 as it is): carry `build/default/bin`,
# `build/default/lib` (the Python package's libqh_ops.so) and `.deps` with the device tool, then
# `source ci/gpu-prebuilt.sh` and run them (QH_BIN points at them for ci/gpu-sanitize.sh). LibTorch comes from the
# box's python3 (the same torch 2.11 + cu130 the binaries were linked against), Google Benchmark from .deps; the
# source tree is linked at the path the binaries were built in, where the tests look for fixtures (QH_BUILT_IN,
# default /work/main). It leaves the caller's shell options alone (no set -e: a failing test later must not end the
# caller's script) and returns non-zero, saying why, when the binaries cannot start here.
QH_BIN="$PWD/build/default/bin"
[ -x "$QH_BIN/qh_tests" ] || { echo "gpu-prebuilt: no $QH_BIN/qh_tests: carry build/default/bin" >&2; return 2; }
qh_torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" ||
  { echo "gpu-prebuilt: python3 has no torch" >&2; return 2; }
qh_cuda_lib="$(python3 -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null)"
export LD_LIBRARY_PATH="$qh_torch_lib:${qh_cuda_lib:+$qh_cuda_lib:}$PWD/.deps/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Where the binaries were built (the checkout they point at for fixtures); /work/main on the developers' machine.
qh_built_in="${QH_BUILT_IN:-/work/main}"
if [ "$qh_built_in" != "$PWD" ] && [ ! -e "$qh_built_in" ]; then
  mkdir -p "$(dirname "$qh_built_in")" && ln -s "$PWD" "$qh_built_in" ||
    { echo "gpu-prebuilt: cannot link $PWD at $qh_built_in" >&2; return 2; }
fi
unset qh_torch_lib qh_cuda_lib qh_built_in
export QH_BIN
"$QH_BIN/qh_tests" --gtest_list_tests >/dev/null || { echo "gpu-prebuilt: prebuilt qh_tests does not start here" >&2; return 1; }
