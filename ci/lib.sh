# Shared by the ci/ scripts: timed stages with a time budget each, and bootstrap + configure + build.
# Sourced, not run.

# stage NAME BUDGET_SECONDS COMMAND...: runs COMMAND under `timeout`, prints its duration against the budget and
# fails the script with a clear line when it fails or runs over.
stage() {
  local name=$1 budget=$2
  shift 2
  local start=$SECONDS rc=0
  echo "== $name (budget ${budget} s)"
  timeout --foreground "$budget" "$@" || rc=$?
  local took=$((SECONDS - start))
  if [ "$rc" = 124 ]; then
    echo "== $name: over its ${budget} s budget, stopped" >&2
    exit 1
  elif [ "$rc" != 0 ]; then
    echo "== $name: failed (exit $rc) after ${took} s" >&2
    exit "$rc"
  fi
  echo "== $name: ${took} s"
}

# Installs dependencies, then configures and builds the `default` preset against the project's venv.
bootstrap_and_build() {
  # ccache keys relative to the clone, so a fresh clone elsewhere (CI) reuses what an earlier build compiled.
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
  stage bootstrap 2400 ci/bootstrap.sh
  QH_VENV="$(ci/bootstrap.sh --venv-path)"
  export QH_VENV PATH="$QH_VENV/bin:$PATH"
  stage configure 600 cmake --preset default -DQH_PYTHON="$QH_VENV/bin/python3"
  stage build 2700 cmake --build --preset default -j "$(nproc)"
}

# On a GPU box without internet (ci/gpu-test.sh, ci/gpu-bench.sh): configures and builds the `device` preset against
# the python3 on PATH (its torch provides LibTorch) and the Debian packages ci/stage-deps.sh staged in .deps/; logs
# to OUT ($1).
device_build() {
  local out=$1 t0=$SECONDS
  [ -d .deps/root/usr ] || { echo "missing .deps/root: run ci/stage-deps.sh where Debian's archive is reachable" >&2; exit 2; }
  export CMAKE_PREFIX_PATH="$PWD/.deps/root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  cmake --preset device -DQH_PYTHON="$(command -v python3)" >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
  cmake --build --preset device -j "$(nproc)" >"$out/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$out/build.log" | head -60; exit 1; }
  echo "configure + build: $((SECONDS - t0)) s"
}
