"""Cross-GPU model: predicts a benchmark's time on GPU B from its run on GPU A, using only the two GPUs' probes
(measured in each run) and the benchmark's own counters (bytes, flops). Nothing is fitted on benchmark pairs.

For a benchmark moving `bytes` and doing `flops`, a GPU with probes P allows at best
    limit(P) = max(copy(bytes; P), flops / tc(P))
where copy(bytes; P) is the probed copy curve at that many bytes (so the fixed cost of a small transfer counts,
not only the asymptotic bandwidth) and tc(P) the fp16 tensor-core probe. The measured time splits into that limit
and the rest, the on-chip work (instruction issue, latency, synchronization) that no probed limit explains,
combined as a 2-norm (a smooth maximum: part of the two overlaps, part adds up):
    t_A^2 = limit(A)^2 + other^2
The on-chip part scales with SM count x SM clock; the limit is recomputed from B's probes:
    t_B = sqrt(limit(B)^2 + (other x sm_rate(A) / sm_rate(B))^2)
A time at or below A's limit (a measurement at the limit) scales with the limit: t_B = t_A limit(B) / limit(A).
The exponent 2 is a structural constant of the model, not a fitted parameter (docs/benchmarks.md shows the error
for exponents 1 to 3 and for a hard maximum on the H100/H200 baselines).
"""
import math
import statistics

from . import results

EXPONENT = 2.0


def copy_time(nbytes, probes):
    """Seconds the probed copy curve gives for `nbytes` (read + written): log-log interpolation between probe
    sizes, linear in bytes beyond the largest, the smallest point's time below it (a launch costs that much)."""
    curve = sorted((float(c["bytes"]), float(c["seconds"])) for c in probes["copy_curve"])
    if not curve:
        raise results.ResultsError("probe copy_curve is empty")
    if nbytes <= 0:
        return 0.0
    if nbytes <= curve[0][0]:
        return curve[0][1]
    if nbytes >= curve[-1][0]:
        return curve[-1][1] * nbytes / curve[-1][0]
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if nbytes <= x1:
            f = (math.log(nbytes) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + f * (math.log(y1) - math.log(y0)))
    raise AssertionError("unreachable")


def limit_time(entry, probes):
    """The least time the probed limits allow for the entry's bytes and flops (0 when it declares neither)."""
    mem = copy_time(float(entry.get("bytes", 0.0)), probes)
    tc = float(entry.get("flops", 0.0)) / (float(probes["tc_fp16_tflops"]) * 1e12)
    return max(mem, tc)


def sm_rate(doc):
    """SM count x SM clock of a run (the clock read during its probes), for the on-chip part of a time."""
    gpus = doc.get("environment", {}).get("gpus") or [{}]
    sms = gpus[0].get("sm_count") or 1
    clock = doc["probes"].get("sm_clock_mhz") or gpus[0].get("clocks", {}).get("sm_max_mhz") or 1
    return float(sms) * float(clock)


def predict_seconds(entry, doc_a, doc_b, exponent=EXPONENT):
    """Predicted seconds on B's GPU of `entry` measured in run `doc_a`."""
    pa, pb = results.probes(doc_a), results.probes(doc_b)
    t = float(entry["us_median"]) * 1e-6
    lim_a, lim_b = limit_time(entry, pa), limit_time(entry, pb)
    if lim_a >= t:
        return t * lim_b / lim_a
    scale = sm_rate(doc_a) / sm_rate(doc_b)
    if exponent == math.inf:  # a hard maximum: the on-chip part is the whole time
        return max(lim_b, t * scale)
    other = (t**exponent - lim_a**exponent) ** (1 / exponent) * scale
    return (lim_b**exponent + other**exponent) ** (1 / exponent)


def compare(doc_a, doc_b, exponent=EXPONENT):
    """Rows {name, measured_a_us, measured_b_us, predicted_b_us, error} for every GPU benchmark in both runs;
    error = predicted / measured - 1."""
    a, b = results.gpu_benchmarks(doc_a), results.gpu_benchmarks(doc_b)
    rows = []
    for name in a:
        if name not in b:
            continue
        pred = predict_seconds(a[name], doc_a, doc_b, exponent) * 1e6
        rows.append({"name": name, "measured_a_us": a[name]["us_median"], "measured_b_us": b[name]["us_median"],
                     "predicted_b_us": pred, "error": pred / b[name]["us_median"] - 1})
    return rows


def summary(rows):
    """Median, 90th percentile and largest absolute relative error of compare() rows (fractions)."""
    errs = sorted(abs(r["error"]) for r in rows)
    if not errs:
        return {"count": 0, "median": None, "p90": None, "max": None}
    return {"count": len(errs), "median": statistics.median(errs), "p90": errs[min(len(errs) - 1, int(0.9 * len(errs)))],
            "max": errs[-1]}


def bandwidth_ratio_summary(doc_a, doc_b):
    """The naive prediction the model replaces (time x copy bandwidth ratio), for comparison."""
    a, b = results.gpu_benchmarks(doc_a), results.gpu_benchmarks(doc_b)
    ratio = results.probes(doc_a)["dram_copy_gbs"] / results.probes(doc_b)["dram_copy_gbs"]
    rows = [{"error": a[n]["us_median"] * ratio / b[n]["us_median"] - 1} for n in a if n in b and a[n].get("bytes")]
    return summary(rows)
