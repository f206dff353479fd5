"""The regression gate: compares a current run with a baseline, benchmark by benchmark, and says what regressed.

Like with like (DESIGN.md):
- same GPU class: a one-sided Mann-Whitney U test of the two runs' samples (the per-sample seconds each GPU-timed
  entry carries) AND a minimum effect: the shift, estimated as the Hodges-Lehmann ratio (the median of all pairwise
  current / baseline ratios: less noisy than a ratio of medians, as robust), must be at least `min_effect`
  (default 3 %). Both must hold, so a tiny but significant shift (many samples) and a large but noisy one (few
  samples) are not regressions. The same for improvements, the other way.
- different GPU classes: the baseline is carried to the current GPU by the cross-GPU model (qh_report.model) and
  the current median is compared with the prediction, with a band of min_effect + the model's error
  (`model_error`, default the p90 measured on the committed H100/H200 baselines). No test: the model's error, not
  sampling noise, dominates. A benchmark whose probed limits explain under 5 % of its time (whole-layer GPTQ: host
  launches on a host the probes do not measure) is not compared across classes.
Entries in one run only, flagged as measurement errors, or without samples are "not compared", with the reason.
A same-class pair whose runs probed their GPUs' limits far apart (`probe_shifts`: a power or clock cap, a throttled
or shared GPU on one side) is still compared as usual, but the gate says so, and a regression bound by a probe that
fell (an improvement bound by one that rose) carries that in its reason: the machine, not the code, may be what
changed. A baseline taken on the slower machine can hide a regression as well.
Two runs timed after different L2 flushes (probes.l2_flush, perf/measure.h) are not compared at all: the flush
changes what the timed call pays for (a write flush left L2 dirty, and a read-only kernel paid for writing it back),
so the pair is refused as bad input and the baseline must be recorded again.
"""
import math
from dataclasses import dataclass

from . import model, results

MIN_EFFECT = 0.03
ALPHA = 0.001  # one-sided; with ~64 samples a side, a 5 % shift at 5 % CV gives p ~ 1e-9
MODEL_ERROR = 0.11  # p90 of |prediction error| on the committed baselines, both directions (docs/benchmarks.md)
# How far a probe may move from the baseline's, same GPU class, before the gate says the machines differ. The
# widest same-class spread of a checked probe on record (perf/marlin_notes.md, 2026-12-01 to 2026-12-08): fp16
# tensor cores 742-785 TFLOP/s on H200s (5.5 %); copy 4.23-4.29 TB/s (H200) and 3007-3057 GB/s (H100), under 2 %.
# 8 % stays clear of that and still flags the one slow machine on record: an H200 shared with another job, whose
# tensor-core probe read 612-630 (18-20 % low).
PROBE_SHIFT = 0.08
# The probes checked (larger is better for each), by what they bound in the model (qh_report.model): the copy
# curve's asymptote for memory-bound entries, the tensor cores for compute-bound ones, the SM clock for the rest.
PROBE_NAMES = {"dram_copy_gbs": "DRAM copy", "tc_fp16_tflops": "fp16 tensor-core", "sm_clock_mhz": "SM clock"}


@dataclass
class Verdict:
    name: str
    status: str  # regressed | improved | unchanged | not compared
    ratio: float = math.nan  # current / baseline: the Hodges-Lehmann ratio (same class) or median / predicted
    p_value: float = math.nan
    reason: str = ""


def mann_whitney_greater(x, y):
    """One-sided p-value that x tends to be larger than y (Mann-Whitney U, normal approximation with the tie
    correction; fine for the tens to thousands of samples a benchmark has)."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs samples on both sides")
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, side) in zip(ranks, pooled) if side == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 0.5
    z = (u1 - n1 * n2 / 2 - 0.5) / math.sqrt(var)  # continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2))


def _median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def hodges_lehmann_ratio(x, y, cap=256):
    """exp(median of log(x_i) - log(y_j) over all pairs); each side thinned evenly to `cap` samples first."""
    def thin(v):
        return v if len(v) <= cap else [v[int(i * len(v) / cap)] for i in range(cap)]
    lx, ly = [math.log(v) for v in thin(x)], [math.log(v) for v in thin(y)]
    return math.exp(_median([a - b for a in lx for b in ly]))


def _samples(entry):
    s = entry.get("samples")
    return s.get("seconds") if isinstance(s, dict) else None


def compare_same_class(name, base, cur, min_effect=MIN_EFFECT, alpha=ALPHA):
    xs, ys = _samples(cur), _samples(base)
    if not xs or not ys:
        return Verdict(name, "not compared", reason="no samples on one side")
    if min(xs + ys) <= 0:
        return Verdict(name, "not compared", reason="a sample time is zero or negative")
    ratio = hodges_lehmann_ratio(xs, ys)
    p_slower, p_faster = mann_whitney_greater(xs, ys), mann_whitney_greater(ys, xs)
    if ratio >= 1 + min_effect and p_slower < alpha:
        return Verdict(name, "regressed", ratio, p_slower)
    if ratio <= 1 / (1 + min_effect) and p_faster < alpha:
        return Verdict(name, "improved", ratio, p_faster)
    return Verdict(name, "unchanged", ratio, min(p_slower, p_faster))


MIN_EXPLAINED = 0.05


def compare_across_classes(name, base, cur, base_doc, cur_doc, min_effect=MIN_EFFECT, model_error=MODEL_ERROR):
    explained = model.limit_time(base, base_doc["probes"]) / (base["us_median"] * 1e-6)
    if explained < MIN_EXPLAINED:
        return Verdict(name, "not compared", reason=f"across GPU classes: the probes explain {explained:.1%} of its "
                                                    "time (host- or latency-bound), the model cannot carry it")
    predicted = model.predict_seconds(base, base_doc, cur_doc) * 1e6
    ratio = cur["us_median"] / predicted
    band = min_effect + model_error
    if ratio > 1 + band:
        return Verdict(name, "regressed", ratio, reason=f"{ratio - 1:+.1%} against the model's prediction (band {band:.0%})")
    if ratio < 1 / (1 + band):
        return Verdict(name, "improved", ratio, reason=f"{ratio - 1:+.1%} against the model's prediction")
    return Verdict(name, "unchanged", ratio, reason=f"within the model's band of {band:.0%}")


def probe_shifts(base_doc, cur_doc, threshold=PROBE_SHIFT):
    """{probe: (baseline value, current value)} for the PROBE_NAMES where a current run of the baseline's GPU class
    is more than `threshold` below or above it. Empty across classes (the model reads each run's own probes) and
    where either run has no probes."""
    if results.gpu_class(base_doc) != results.gpu_class(cur_doc):
        return {}
    pb, pc = base_doc.get("probes"), cur_doc.get("probes")
    if not isinstance(pb, dict) or not isinstance(pc, dict):
        return {}
    out = {}
    for key in PROBE_NAMES:
        b, c = pb.get(key), pc.get(key)
        if isinstance(b, (int, float)) and isinstance(c, (int, float)) and b > 0 and abs(c / b - 1) > threshold:
            out[key] = (float(b), float(c))
    return out


def describe_shift(key, values):
    b, c = values
    side = "below" if c < b else "above"
    return f"the {PROBE_NAMES[key]} probe is {abs(c / b - 1):.1%} {side} the baseline's ({b:.4g} -> {c:.4g})"


def binding_probe(entry, probes):
    """The probe that bounds an entry in the model's 2-norm split (t^2 = limit^2 + other^2): the limit's (copy or
    tensor cores, whichever is larger) where it holds at least half of t^2, else the SM clock (the on-chip rest)."""
    t = float(entry["us_median"]) * 1e-6
    mem = model.copy_time(float(entry.get("bytes", 0.0)), probes)
    tc = float(entry.get("flops", 0.0)) / (float(probes["tc_fp16_tflops"]) * 1e12)
    if max(mem, tc) ** 2 >= t**2 / 2:
        return "dram_copy_gbs" if mem >= tc else "tc_fp16_tflops"
    return "sm_clock_mhz"


def blame_probes(verdicts, base, base_doc, shifts):
    """Appends to each same-class regression's reason a fallen probe that bounds it (binding_probe), and to each
    improvement's a risen one."""
    if not shifts or not all(k in base_doc["probes"] for k in ("copy_curve", "tc_fp16_tflops")):
        return
    for v in verdicts:
        if v.status not in ("regressed", "improved"):
            continue
        key = binding_probe(base[v.name], base_doc["probes"])
        if key not in shifts:
            continue
        b, c = shifts[key]
        if (c < b) != (v.status == "regressed"):
            continue
        speed = "slower" if c < b else "faster"
        note = f"bound by {PROBE_NAMES[key]}, and {describe_shift(key, shifts[key])}: the GPU may be {speed}"
        v.reason = f"{v.reason}; {note}" if v.reason else note


def gate(base_doc, cur_doc, min_effect=MIN_EFFECT, alpha=ALPHA, model_error=MODEL_ERROR,
         probe_shift=PROBE_SHIFT):
    """Verdicts for every benchmark of either run (GPU-timed entries), in the baseline's order, then new ones; a
    same-class regression (improvement) bound by a probe that fell (rose) past `probe_shift` says so in its reason
    (probe_shifts)."""
    base, cur = results.gpu_benchmarks(base_doc), results.gpu_benchmarks(cur_doc)
    flush_base, flush_cur = results.l2_flush(base_doc), results.l2_flush(cur_doc)
    if base and cur and flush_base and flush_cur and flush_base != flush_cur:
        raise results.ResultsError(
            f"{base_doc['_path']} was timed after a {flush_base!r} and {cur_doc['_path']} after a {flush_cur!r}: "
            "their times do not compare; record the baseline again with this build (qh_report baseline)")
    same = results.gpu_class(base_doc) == results.gpu_class(cur_doc)
    if not same:
        results.probes(base_doc), results.probes(cur_doc)  # a cross-class comparison needs both runs' probes
    out = []
    for name in list(base) + [n for n in cur if n not in base]:
        if name not in cur:
            out.append(Verdict(name, "not compared", reason="missing in the current run"))
        elif name not in base:
            out.append(Verdict(name, "not compared", reason="new: not in the baseline"))
        elif base[name].get("measurement_error") or cur[name].get("measurement_error"):
            out.append(Verdict(name, "not compared", reason="flagged as a measurement error"))
        elif same:
            out.append(compare_same_class(name, base[name], cur[name], min_effect, alpha))
        else:
            out.append(compare_across_classes(name, base[name], cur[name], base_doc, cur_doc, min_effect, model_error))
    if same:
        blame_probes(out, base, base_doc, probe_shifts(base_doc, cur_doc, probe_shift))
    return out
