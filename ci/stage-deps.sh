#!/usr/bin/env bash
# Stages the Debian packages a GPU box without internet lacks (GoogleTest, Google Benchmark, nlohmann/json) into
# .deps/root (git-ignored): `apt-get download` + `dpkg -x`, run where Debian's archive is reachable. Carry .deps/
# to the GPU box and configure with CMAKE_PREFIX_PATH="$PWD/.deps/root/usr" (README: "Building on a GPU box").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pkgs=(libgtest-dev libgmock-dev googletest libbenchmark-dev libbenchmark1debian nlohmann-json3-dev)
mkdir -p .deps/debs .deps/root
if ! (cd .deps/debs && apt-get download "${pkgs[@]}" >/dev/null 2>&1); then
  apt-get update -qq
  (cd .deps/debs && apt-get download "${pkgs[@]}")
fi
for deb in .deps/debs/*.deb; do dpkg -x "$deb" .deps/root; done
echo "staged ${#pkgs[@]} packages into .deps/root ($(du -sh .deps | cut -f1)); carry .deps to the GPU box"
