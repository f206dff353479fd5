#!/usr/bin/env bash
# Installs everything qharness needs on a fresh machine of our kind (Debian, root, nvcc 13 present), idempotently:
# Debian packages (build tools, test frameworks, valgrind, clang for fuzzing, chromium for the report test), then a
# Python venv (torch/LibTorch, numpy, safetensors, matplotlib, pytest) kept outside the clone and keyed by the hash
# of ci/requirements.txt. On a ready machine it only checks, in a few seconds.
# Prints `QH_VENV=<path>` last. `ci/bootstrap.sh --venv-path` only prints that path (installs nothing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "[bootstrap] $*" >&2; }
req="$here/requirements.txt"
hash="$(sha256sum "$req" | cut -c1-12)"
venv="${QH_VENV:-$HOME/.cache/qharness/venv-$hash}"
if [ "${1:-}" = "--venv-path" ]; then
  echo "$venv"
  exit 0
fi

# chromium + a font: the report test renders report.html headless and screenshots it (reports/tests/test_html.py).
debs=(cmake ninja-build nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev ccache valgrind
      clang libclang-rt-14-dev chromium fonts-dejavu-core)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if [ ! -f "$venv/.complete" ]; then
  log "creating Python venv $venv (torch wheel: ~3 GB with its CUDA libraries; minutes on a cold cache)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -r "$req" >&2
  "$venv/bin/python" -c 'import torch, numpy, safetensors, matplotlib, pytest' >&2
  touch "$venv/.complete"
fi
echo "QH_VENV=$venv"
