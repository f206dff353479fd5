#!/usr/bin/env python3
"""Instructions per call of CPU benchmarks, counted by callgrind: exact and repeatable on a noisy machine where
wall times are not, so CI can gate on them (issue 9). Works on the torch-free benchmark binaries, whose benchmark
bodies go through perf/cpu_bench.h (only qh_callgrind_region() is counted: setup and the framework are not).

usage: perf/cpu_instructions.py BINARY --out FILE.json [--filter REGEX]

Writes {"binary", "valgrind", "filter", "benchmarks": {name: instructions_per_call}} atomically. Each benchmark runs in its
own valgrind process (a few seconds to a minute each).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile


def fail(message):
    print(f"cpu_instructions: {message}", file=sys.stderr)
    sys.exit(2)


def list_benchmarks(binary, regex):
    out = subprocess.run([binary, "--benchmark_list_tests", f"--benchmark_filter={regex}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"{binary} --benchmark_list_tests failed: {out.stderr.strip()}")
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def count(binary, name, workdir):
    cg_out = os.path.join(workdir, "callgrind.out")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg_out}", "--collect-atstart=no",
           "--toggle-collect=qh_callgrind_region", binary, f"--benchmark_filter=^{re.escape(name)}$",
           "--benchmark_min_time=0.000001"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"callgrind run of {name} failed (exit {run.returncode}):\n{run.stderr[-2000:]}")
    reps = re.search(r"qh_callgrind_reps=(\d+)", run.stderr)
    if not reps:
        fail(f"{name} did not enter qh_callgrind_region (is its body run through perf/cpu_bench.h?)")
    totals = None
    with open(cg_out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                totals = int(line.split()[1])
    if not totals:
        fail(f"no instruction total in callgrind's output for {name}")
    return totals / int(reps.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("--out", required=True)
    ap.add_argument("--filter", default=".")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        fail(f"{args.binary} is not an executable (build the project first)")
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    if version.returncode != 0:
        fail("valgrind is not installed (ci/bootstrap.sh installs it)")
    names = list_benchmarks(args.binary, args.filter)
    if not names:
        fail(f"no benchmark of {args.binary} matches {args.filter!r}")
    result = {"binary": os.path.basename(args.binary), "valgrind": version.stdout.strip(), "filter": args.filter,
              "benchmarks": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for i, name in enumerate(names, 1):
            result["benchmarks"][name] = count(args.binary, name, workdir)
            print(f"[{i}/{len(names)}] {name}: {result['benchmarks'][name]:,.0f} instructions per call", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = f"{args.out}.tmp-{os.getpid()}"  # temp + rename: the old file or the new one, never a partial one
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
