# Sourced on a GPU box to run binaries built on the CI machine instead of building there (the default preset
# compiles sm_80 and sm_90a, so build/default/bin runs on an H100/H200 as it is): carry `build/default/bin` and
# `.deps` with the device tool, then `source ci/gpu-prebuilt.sh` and run them (QH_BIN points at them for
# ci/gpu-sanitize.sh). LibTorch comes from the box's python3 (the same torch 2.11 + cu130 the binaries were linked
# against), Google Benchmark from .deps; the source tree is linked at the path the binaries were built in, where
# the tests look for fixtures (QH_BUILT_IN, default /work/main). Checked by running qh_tests --gtest_list_tests: a binary that cannot start says why.
set -euo pipefail
QH_BIN="$PWD/build/default/bin"
[ -x "$QH_BIN/qh_tests" ] || { echo "no $QH_BIN/qh_tests: carry build/default/bin" >&2; return 2; }
torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
cuda_lib="$(python3 -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)"
export LD_LIBRARY_PATH="$torch_lib:${cuda_lib:+$cuda_lib:}$PWD/.deps/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Where the binaries were built (the checkout they point at for fixtures); /work/main on the developers' machine.
built_in="${QH_BUILT_IN:-/work/main}"
if [ "$built_in" != "$PWD" ] && [ ! -e "$built_in" ]; then
  mkdir -p "$(dirname "$built_in")"
  ln -s "$PWD" "$built_in"
fi
export QH_BIN
"$QH_BIN/qh_tests" --gtest_list_tests >/dev/null || { echo "prebuilt qh_tests does not start here" >&2; return 1; }
