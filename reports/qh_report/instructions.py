"""CI's CPU gate: instruction counts per call (perf/cpu_instructions.py, callgrind) against a committed baseline.
Counts of a deterministic benchmark body are exactly repeatable for one build on one machine (two runs here gave
identical counts), unlike wall times on a noisy 2-core runner, so a small threshold is safe: an increase above
`max_increase` (default 2 %) is a regression. What moves counts without a code change is the toolchain (compiler,
glibc's CPU-dependent memcpy variants): about a per cent, below the threshold; a new toolchain means a new baseline."""
import json

from . import results

MAX_INCREASE = 0.02


def load_counts(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise results.ResultsError(f"{path}: not readable JSON ({e})") from None
    counts = doc.get("benchmarks") if isinstance(doc, dict) else None
    if not isinstance(counts, dict) or not counts:
        raise results.ResultsError(f"{path}: expected {{'benchmarks': {{name: instructions per call}}}} "
                                   "as perf/cpu_instructions.py writes")
    for name, n in counts.items():
        if not (isinstance(n, (int, float)) and n > 0):
            raise results.ResultsError(f"{path}: benchmark {name} has a non-positive count {n!r}")
    return counts


def compare(baseline, current, max_increase=MAX_INCREASE):
    """Rows (name, status, ratio) with status regressed | improved | unchanged | not compared."""
    rows = []
    for name in list(baseline) + [n for n in current if n not in baseline]:
        if name not in current or name not in baseline:
            rows.append((name, "not compared", None))
            continue
        ratio = current[name] / baseline[name]
        status = ("regressed" if ratio > 1 + max_increase else "improved" if ratio < 1 - max_increase else "unchanged")
        rows.append((name, status, ratio))
    return rows
