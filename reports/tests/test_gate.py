"""The regression gate (qh_report.gate) on synthetic distributions at realistic noise (CV 2-5 %; 64 samples for
the baseline, as committed baselines keep, 200 for the current run, which keeps all it took: 10 to 2000), on
hand-made edge cases, and once on the real H100/H200 baselines."""
import json
import math
import os
import random

import pytest

from qh_report import gate, results
from qh_report.__main__ import main

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BASELINES = os.path.join(ROOT, "fixtures", "baselines")
CURVE = [{"bytes": float(2**k), "seconds": 2.0**k / 1e12} for k in range(20, 31, 2)]


def run_doc(entries, gpu="G", memory=2**34, probes=None):
    return {"schema_version": 1, "_path": f"{gpu}.json",
            "environment": {"gpus": [{"name": gpu, "memory": memory, "sm_count": 100}]},
            "probes": probes or {"dram_copy_gbs": 1000.0, "tc_fp16_tflops": 100.0, "launch_us": 2.0,
                                 "sm_clock_mhz": 1000.0, "copy_curve": CURVE},
            "benchmarks": entries}


def entry(name, median_s, cv, rng, n=64, **counters):
    seconds = [median_s * math.exp(rng.gauss(0, cv)) for _ in range(n)]
    return {"name": name, "us_median": sorted(seconds)[n // 2] * 1e6, "samples": {"seconds": seconds}, **counters}


def gate_args(tmp_path, base, cur):
    """The CLI's arguments for a gate of run docs `base` and `cur`, written to tmp_path as base.json and cur.json."""
    for name, doc in (("base", base), ("cur", cur)):
        (tmp_path / f"{name}.json").write_text(json.dumps({k: v for k, v in doc.items() if k != "_path"}))
    return ["gate", "--baseline", str(tmp_path / "base.json"), "--current", str(tmp_path / "cur.json")]


def suite(rng, cv, slowdown=0.0, n_bench=10, n=64):
    return [entry(f"k{i}", 1e-4 * (1 + i) * (1 + slowdown), cv, rng, n=n) for i in range(n_bench)]


def test_mann_whitney_matches_a_hand_count():
    # x = {3, 4}, y = {1, 2}: U = 4, the largest possible; exact one-sided p = 1 / C(4, 2) = 1/6.
    assert gate.mann_whitney_greater([3, 4], [1, 2]) == pytest.approx(1 / 6, abs=0.08)  # normal approximation
    assert gate.mann_whitney_greater([1, 2], [3, 4]) > 0.8
    assert gate.mann_whitney_greater([5] * 10, [5] * 10) == 0.5  # all tied: no evidence either way


@pytest.mark.parametrize("cv", [0.02, 0.05])
def test_a_a_comparisons_raise_no_alarm_in_20_runs(cv):
    rng = random.Random(1)
    alarms = sum(v.status != "unchanged"
                 for _ in range(20) for v in gate.gate(run_doc(suite(rng, cv)), run_doc(suite(rng, cv, n=200))))
    assert alarms == 0


@pytest.mark.parametrize("cv", [0.02, 0.05])
def test_a_planted_5_percent_slowdown_is_caught_in_at_least_19_of_20_runs(cv):
    rng = random.Random(2)
    caught = 0
    for _ in range(20):
        base = run_doc([entry("k", 1e-4, cv, rng)])
        cur = run_doc([entry("k", 1.05e-4, cv, rng, n=200)])
        caught += gate.gate(base, cur)[0].status == "regressed"
    assert caught >= 19


def test_a_significant_but_tiny_shift_is_not_a_regression():
    rng = random.Random(3)
    base = run_doc([entry("k", 1e-4, 0.002, rng, n=2000)])
    cur = run_doc([entry("k", 1.01e-4, 0.002, rng, n=2000)])  # 1 %: p ~ 0, but below the 3 % minimum effect
    v = gate.gate(base, cur)[0]
    assert v.status == "unchanged" and v.p_value < 1e-6


def test_improvements_missing_new_and_flagged_entries_are_reported_with_reasons():
    rng = random.Random(4)
    base = run_doc([entry("fast", 1e-4, 0.02, rng), entry("gone", 1e-4, 0.02, rng),
                    entry("bad", 1e-4, 0.02, rng, measurement_error=1.0)])
    cur = run_doc([entry("fast", 0.9e-4, 0.02, rng), entry("bad", 1e-4, 0.02, rng), entry("new", 1e-4, 0.02, rng)])
    by = {v.name: v for v in gate.gate(base, cur)}
    assert by["fast"].status == "improved"
    assert (by["gone"].status, by["gone"].reason) == ("not compared", "missing in the current run")
    assert by["new"].status == "not compared" and "new" in by["new"].reason
    assert by["bad"].status == "not compared" and "measurement error" in by["bad"].reason


def test_a_change_of_gpu_class_alone_is_not_a_regression():
    # A memory-bound kernel at 80 % of a 1 TB/s copy moves to a GPU with twice the bandwidth: it gets faster in the
    # way the model expects (the 2-norm split: limit halves, the on-chip part stays), with 3 % CV noise.
    rng = random.Random(5)
    nbytes = 2.0**28
    limit_a, limit_b = nbytes / 1e12, nbytes / 2e12
    t_a = limit_a / 0.8
    t_b = math.hypot(limit_b, math.sqrt(t_a**2 - limit_a**2))
    fast_curve = [dict(c, seconds=c["seconds"] / 2) for c in CURVE]
    base = run_doc([entry("k", t_a, 0.03, rng, bytes=nbytes)], gpu="A")
    cur = run_doc([entry("k", t_b, 0.03, rng, bytes=nbytes)], gpu="B",
                  probes={"dram_copy_gbs": 2000.0, "tc_fp16_tflops": 100.0, "launch_us": 2.0, "sm_clock_mhz": 1000.0,
                          "copy_curve": fast_curve})
    assert gate.gate(base, cur)[0].status == "unchanged"
    slow = run_doc([entry("k", t_a, 0.03, rng, bytes=nbytes)], gpu="B", probes=cur["probes"])  # no faster at all
    assert gate.gate(base, slow)[0].status == "regressed"


def test_the_real_baselines_across_h100_and_h200_show_no_regression_either_way(capsys):
    h100 = os.path.join(BASELINES, "nvidia-h100-80gb-hbm3.json")
    h200 = os.path.join(BASELINES, "nvidia-h200.json")
    for base, cur in ((h100, h200), (h200, h100)):
        verdicts = gate.gate(results.load(base), results.load(cur))
        assert not [v.name for v in verdicts if v.status == "regressed"]
        assert sum(v.status == "unchanged" for v in verdicts) >= 150
    assert main(["gate", "--baseline", h100, "--current", h200]) == 0


def test_the_cli_exits_1_on_a_regression_and_2_on_bad_input(tmp_path, capsys):
    rng = random.Random(6)
    args = gate_args(tmp_path, run_doc([entry("k", 1e-4, 0.02, rng)]), run_doc([entry("k", 1.2e-4, 0.02, rng)]))
    assert main(args) == 1
    assert "k " in capsys.readouterr().out
    (tmp_path / "broken.json").write_text("{")
    assert main(["gate", "--baseline", str(tmp_path / "broken.json"), "--current", str(tmp_path / "cur.json")]) == 2
    assert "broken.json: not readable JSON" in capsys.readouterr().err


def test_runs_timed_after_different_l2_flushes_are_refused_not_compared(tmp_path, capsys):
    rng = random.Random(7)
    read_flush = dict(run_doc([])["probes"], l2_flush="read of 2 x L2 through L2 before every sample")
    old = run_doc([entry("k", 1e-4, 0.02, rng)])  # no l2_flush: a run from before the field, a write flush
    new = run_doc([entry("k", 0.8e-4, 0.02, rng)], probes=read_flush)
    assert results.l2_flush(old) == results.WRITE_FLUSH
    with pytest.raises(results.ResultsError, match="do not compare; record the baseline again"):
        gate.gate(old, new)
    # The same flush named explicitly on one side and implied on the other compares as usual.
    named = run_doc([entry("k", 1e-4, 0.02, rng)], probes=dict(read_flush, l2_flush=results.WRITE_FLUSH))
    assert gate.gate(old, named)[0].status == "unchanged"
    assert main(gate_args(tmp_path, old, new)) == 2
    assert "base.json was timed after a 'cudaMemsetAsync" in capsys.readouterr().err


def slow_probes(copy=1.0, tc=1.0, clock=1.0):
    """The default probes of run_doc with the copy bandwidth (and its curve), tensor cores and SM clock scaled."""
    p = run_doc([])["probes"]
    return dict(p, dram_copy_gbs=p["dram_copy_gbs"] * copy, tc_fp16_tflops=p["tc_fp16_tflops"] * tc,
                sm_clock_mhz=p["sm_clock_mhz"] * clock,
                copy_curve=[dict(c, seconds=c["seconds"] / copy) for c in p["copy_curve"]])


def test_a_machine_with_a_fallen_probe_is_named_in_the_regressions_it_bounds():
    # The current machine copies 20 % slower (a power cap, a shared GPU). A kernel at 90 % of the copy limit slows
    # by that much and regresses; the gate keeps the verdict (samples say it is slower) but names the probe. A
    # kernel with no bytes or flops (on-chip work, bound by the SM clock, which did not fall) that also regressed
    # gets no such note: its slowdown is not the copy bandwidth's.
    rng = random.Random(8)
    nbytes = 2.0**28
    t = nbytes / 1e12 / 0.9
    base = run_doc([entry("copy", t, 0.02, rng, bytes=nbytes), entry("onchip", 1e-4, 0.02, rng)])
    cur = run_doc([entry("copy", t / 0.8, 0.02, rng, bytes=nbytes), entry("onchip", 1.2e-4, 0.02, rng)],
                  probes=slow_probes(copy=0.8))
    assert gate.probe_shifts(base, cur) == {"dram_copy_gbs": (1000.0, 800.0)}
    by = {v.name: v for v in gate.gate(base, cur)}
    assert by["copy"].status == "regressed" and "DRAM copy probe is 20.0% below the baseline's" in by["copy"].reason
    assert by["onchip"].status == "regressed" and by["onchip"].reason == ""
    # A fallen SM clock is the on-chip kernel's probe instead.
    clocked = run_doc(cur["benchmarks"], probes=slow_probes(copy=0.8, clock=0.85))
    assert "SM clock probe is 15.0% below" in {v.name: v for v in gate.gate(base, clocked)}["onchip"].reason


def test_which_probe_binds_an_entry_follows_the_models_split():
    probes = run_doc([])["probes"]  # 1 TB/s copy curve, 100 TFLOP/s
    # 2^28 bytes take 268 us at the limit: at 300 us the limit holds 80 % of t^2 (memory-bound), at 500 us 29 %.
    assert gate.binding_probe({"us_median": 300.0, "bytes": 2.0**28}, probes) == "dram_copy_gbs"
    assert gate.binding_probe({"us_median": 500.0, "bytes": 2.0**28}, probes) == "sm_clock_mhz"
    # 2e10 flops take 200 us at 100 TFLOP/s, more than the bytes' 1 us: compute-bound at 220 us.
    assert gate.binding_probe({"us_median": 220.0, "bytes": 2.0**20, "flops": 2e10}, probes) == "tc_fp16_tflops"


def test_a_baseline_from_the_slower_machine_is_named_in_the_improvements_it_bounds(tmp_path, capsys):
    # The other way round: the baseline's GPU copied 20 % slower than the current one. A memory-bound kernel that
    # only follows the machine looks improved; the gate says the GPU may be faster, and warns that a regression
    # could hide behind it.
    rng = random.Random(11)
    nbytes = 2.0**28
    t = nbytes / 1e12 / 0.9
    base = run_doc([entry("copy", t / 0.8, 0.02, rng, bytes=nbytes)], probes=slow_probes(copy=0.8))
    cur = run_doc([entry("copy", t, 0.02, rng, bytes=nbytes)])
    assert gate.probe_shifts(base, cur) == {"dram_copy_gbs": (800.0, 1000.0)}
    v = gate.gate(base, cur)[0]
    assert v.status == "improved" and "DRAM copy probe is 25.0% above the baseline's" in v.reason
    assert "the GPU may be faster" in v.reason
    assert main(gate_args(tmp_path, base, cur)) == 0
    out = capsys.readouterr().out
    assert "25.0% above the baseline's (800 -> 1000): the baseline's machine was the slower" in out
    assert "a regression may be hidden" in out


def test_probe_noise_another_gpu_class_or_no_probes_raise_no_probe_warning():
    rng = random.Random(9)
    base = run_doc([entry("k", 1e-4, 0.02, rng)])
    # 5.5 % lower tensor cores: the widest same-class spread on record, under PROBE_SHIFT.
    assert gate.probe_shifts(base, run_doc([], probes=slow_probes(tc=0.945, copy=0.98))) == {}
    assert gate.probe_shifts(base, run_doc([], probes=slow_probes(tc=1.055, clock=1.02))) == {}
    assert gate.probe_shifts(base, run_doc([], gpu="other", probes=slow_probes(copy=0.5))) == {}
    no_probes = dict(run_doc([]), probes=None)
    assert gate.probe_shifts(base, no_probes) == {} and gate.probe_shifts(no_probes, base) == {}
    # A lower threshold is the caller's to set.
    assert gate.probe_shifts(base, run_doc([], probes=slow_probes(copy=0.96)), threshold=0.03) == {
        "dram_copy_gbs": (1000.0, 960.0)}


def test_the_cli_warns_of_a_slow_machine_and_still_exits_on_the_regression(tmp_path, capsys):
    rng = random.Random(10)
    nbytes = 2.0**28
    t = nbytes / 1e12 / 0.9
    args = gate_args(tmp_path, run_doc([entry("k", t, 0.02, rng, bytes=nbytes)]),
                     run_doc([entry("k", t / 0.7, 0.02, rng, bytes=nbytes)], probes=slow_probes(copy=0.7)))
    assert main(args) == 1
    out = capsys.readouterr().out
    assert out.startswith("warning: same GPU class, but the DRAM copy probe is 30.0% below the baseline's "
                          "(1000 -> 700)")
    assert "bound by DRAM copy" in out
    # Past --probe-shift 0.5 the same drop is not warned of; the regression stands.
    assert main(args + ["--probe-shift", "0.5"]) == 1
    assert "warning" not in capsys.readouterr().out
