"""The cross-GPU model (qh_report.model): closed-form cases on synthetic runs, bad input, and the goal of issue 8 on
the committed H100/H200 baselines (median prediction error <= 10 % in both directions)."""
import json
import math
import os

import pytest

from qh_report import baseline, model, results

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BASELINES = os.path.join(ROOT, "fixtures", "baselines")

# A copy curve whose every point runs at exactly 1 TB/s (GPU A) or 2 TB/s (GPU B), no fixed cost.
CURVE_A = [{"bytes": float(2**k), "seconds": 2.0**k / 1e12} for k in range(20, 31, 2)]
CURVE_B = [{"bytes": c["bytes"], "seconds": c["seconds"] / 2} for c in CURVE_A]


def run(curve, tc_tflops=100.0, sms=100, clock=1000.0, entries=()):
    return {"schema_version": 1, "_path": "synthetic.json",
            "environment": {"gpus": [{"name": "G", "memory": 2**34, "sm_count": sms}]},
            "probes": {"dram_copy_gbs": 1000.0, "tc_fp16_tflops": tc_tflops, "launch_us": 2.0, "sm_clock_mhz": clock,
                       "copy_curve": curve},
            "benchmarks": list(entries)}


def test_copy_time_interpolates_the_curve_and_extends_it():
    p = {"copy_curve": [{"bytes": 1e6, "seconds": 1e-5}, {"bytes": 1e8, "seconds": 1e-4}]}
    assert model.copy_time(1e6, p) == pytest.approx(1e-5)
    assert model.copy_time(1e7, p) == pytest.approx(math.sqrt(1e-5 * 1e-4))  # log-log midpoint
    assert model.copy_time(2e8, p) == pytest.approx(2e-4)  # linear beyond the largest size
    assert model.copy_time(10, p) == pytest.approx(1e-5)  # a launch costs at least the smallest copy
    assert model.copy_time(0, p) == 0


def test_a_kernel_at_the_copy_limit_moves_with_the_bandwidth():
    e = {"name": "k", "us_median": 2**28 / 1e12 * 1e6, "bytes": float(2**28)}
    assert model.predict_seconds(e, run(CURVE_A), run(CURVE_B)) == pytest.approx(2**28 / 2e12)


def test_work_no_probe_explains_scales_with_sm_count_times_clock():
    e = {"name": "k", "us_median": 100.0}
    a, b = run(CURVE_A, sms=100, clock=1000), run(CURVE_B, sms=100, clock=1250)
    assert model.predict_seconds(e, a, b) == pytest.approx(100e-6 / 1.25)


def test_compute_at_the_tensor_core_limit_moves_with_the_tensor_core_probe():
    flops = 1e12
    e = {"name": "k", "us_median": flops / 100e12 * 1e6, "flops": flops}
    assert model.predict_seconds(e, run(CURVE_A, tc_tflops=100), run(CURVE_B, tc_tflops=200)) == pytest.approx(5e-3)


def test_between_the_limits_the_time_splits_as_a_two_norm():
    # t_A = 5, limit_A = 3 (copy at 1 TB/s), so the on-chip part is 4; on B the limit halves to 1.5.
    nbytes = 3e-6 * 1e12
    e = {"name": "k", "us_median": 5.0, "bytes": nbytes}
    a, b = run(CURVE_A), run(CURVE_B)
    assert model.limit_time(e, a["probes"]) == pytest.approx(3e-6, rel=1e-9)
    assert model.predict_seconds(e, a, b) == pytest.approx(math.hypot(1.5e-6, 4e-6), rel=1e-9)
    assert model.predict_seconds(e, a, b, exponent=1) == pytest.approx(1.5e-6 + 2e-6, rel=1e-9)
    assert model.predict_seconds(e, a, b, exponent=math.inf) == pytest.approx(5e-6, rel=1e-9)


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("doc, words", [
    ({"schema_version": 2, "benchmarks": []}, "schema_version 2"),
    ({"schema_version": 1, "benchmarks": {}}, "'benchmarks' must be a list"),
    ({"schema_version": 1, "benchmarks": [{"time": 1}]}, r"benchmarks\[0\] has no name"),
    ([1, 2], "JSON object"),
])
def test_malformed_results_are_refused_by_name(tmp_path, doc, words):
    path = write(tmp_path, "bad.json", doc)
    with pytest.raises(results.ResultsError, match=words) as e:
        results.load(path)
    assert "bad.json" in str(e.value)


def test_a_run_without_probes_or_with_a_zero_time_cannot_be_modelled(tmp_path):
    no_probes = results.load(write(tmp_path, "cpu.json", {"schema_version": 1, "benchmarks": [], "probes": None}))
    with pytest.raises(results.ResultsError, match="no GPU probes"):
        results.probes(no_probes)
    zero = results.load(write(tmp_path, "zero.json", {"schema_version": 1, "benchmarks": [{"name": "k", "us_median": 0}]}))
    with pytest.raises(results.ResultsError, match="non-positive time"):
        results.gpu_benchmarks(zero)


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    from qh_report.__main__ import main
    assert main(["model", str(tmp_path / "missing.json"), str(tmp_path / "other.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_baseline_thins_samples_in_order_and_keeps_provenance(tmp_path):
    doc = run(CURVE_A, entries=[{"name": "k", "us_median": 1.0, "samples": {"seconds": list(range(1000)),
                                                                           "sm_mhz": [1.0] * 1000}}])
    out = baseline.make(doc, "how")
    s = out["benchmarks"][0]["samples"]["seconds"]
    assert len(s) == baseline.MAX_SAMPLES and s == sorted(s) and s[0] == 0
    assert out["provenance"]["command"] == "how" and out["provenance"]["gpu_class"] == "G 16GiB"
    no_gpu = dict(doc, environment={"gpus": []})
    with pytest.raises(results.ResultsError, match="no GPU"):
        baseline.make(no_gpu, "how")


def test_the_committed_baselines_meet_the_cross_gpu_goal():
    h100 = results.load(os.path.join(BASELINES, "nvidia-h100-80gb-hbm3.json"))
    h200 = results.load(os.path.join(BASELINES, "nvidia-h200.json"))
    for a, b in ((h100, h200), (h200, h100)):
        rows = model.compare(a, b)
        assert len(rows) >= 100
        s, naive = model.summary(rows), model.bandwidth_ratio_summary(a, b)
        assert s["median"] <= 0.10, s
        assert naive["median"] > 2 * s["median"], (naive, s)  # the point of the model over a bandwidth ratio
