"""report.html and summary.json (qh_report.html): the sections and numbers a reader relies on, bad input, and the
page as headless Chromium renders it (every section there, no broken figure, a screenshot that is not blank)."""
import json
import os
import re
import shutil
import subprocess

import pytest

from qh_report import html, runs
from qh_report.__main__ import main

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BASELINES = [os.path.join(ROOT, "fixtures", "baselines", f) for f in ("nvidia-h100-80gb-hbm3.json", "nvidia-h200.json")]


def cpu_run(tmp_path, **extra):
    """A results.json as `qharness run` writes it on a machine without a GPU."""
    doc = {
        "schema_version": 1,
        "tool": {"name": "qharness", "version": "0.1.0", "commit": "abc"},
        "environment": {"host": "ci", "cpu": {"model": "x", "threads": 2}, "gpus": [],
                        "cuda": {"built_with": True, "devices": 0, "unavailable": "cudaErrorNoDevice"}},
        "summary": {},
        "checks": [
            {"name": "Pack.RoundTrip", "suite": "qh_tests", "status": "pass", "duration_s": 0.5, "message": ""},
            {"name": "Bias.Kept", "suite": "qh_tests", "status": "fail", "duration_s": 0.1,
             "message": "bias <b>lost</b> on layer q_proj"},
            {"name": "GpuMarlinGemm.Small", "suite": "qh_gpu", "status": "skip", "duration_s": 0.0,
             "message": "no usable CUDA device"},
            {"name": "GpuMarlinGemm.Large", "suite": "qh_gpu", "status": "skip", "duration_s": 0.0,
             "message": "no usable CUDA device"},
        ],
        "layers": [{"name": "layer.dead", "path": "reference", "bits": 4, "group_size": 128, "desc_act": False,
                    "damp_initial": 0.01, "damp_final": 0.0125, "attempts": 2, "float64_retry": False,
                    "dead_columns": 1, "calib_tokens": 256, "min_pivot": 0.02, "loss": 1.5, "seconds": 0.1}],
        "benchmarks": [{"name": "gptq/pack/bits:4/K:4096/N:4096", "real_time": 120.0, "time_unit": "ms",
                        "bytes_per_second": 1.7e8}],
        "probes": None,
    }
    doc.update(extra)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    return str(path)


def render(tmp_path, paths):
    out = tmp_path / "out"
    assert main(["html", *paths, "--out", str(out)]) == 0
    return (out / "report.html").read_text(), json.loads((out / "summary.json").read_text()), out


def test_a_cpu_run_beside_the_baselines(tmp_path):
    text, summary, _ = render(tmp_path, [cpu_run(tmp_path)] + BASELINES)
    for s in html.SECTIONS:
        assert f"id='{s}'" in text
    assert "This run had no GPU" in text and "cudaErrorNoDevice" in text
    assert summary["gpu"] is False
    assert summary["checks"] == {"pass": 1, "fail": 1, "skip": 2, "error": 0}
    assert summary["failed_checks"] == ["Bias.Kept"]
    assert [r["role"] for r in summary["runs"]] == ["current", "baseline", "baseline"]
    # A message is shown escaped, never as markup; skips are grouped by their reason.
    assert "bias &lt;b&gt;lost&lt;/b&gt; on layer q_proj" in text and "<b>lost</b>" not in text
    assert re.search(r"no usable CUDA device</td><td>2</td>", text)
    assert "layer.dead" in text
    # Both directions between the two baselines' GPU classes, with the counts of common benchmarks.
    h100, h200 = (runs.load_runs([p])[0] for p in BASELINES)
    common = {e.name for e in h100.entries if e.gpu} & {e.name for e in h200.entries if e.gpu}
    assert [c["count"] for c in summary["cross_gpu"]] == [len(common), len(common)]
    # Figures: a roofline and a vs-cuBLAS plot per baseline, and one cross-GPU plot per direction.
    assert summary["images"] == text.count("src='data:image/png;base64,") == 6


def test_a_gpu_run_has_no_banner_and_its_own_figures(tmp_path):
    text, summary, _ = render(tmp_path, BASELINES[:1])
    assert "This run had no GPU" not in text
    assert summary["gpu"] is True and summary["cross_gpu"] == []
    assert summary["images"] == 2  # roofline + vs cuBLAS; no second class to carry to
    assert "Fewer than two GPU classes" in text


def test_runs_timed_after_different_l2_flushes_get_a_banner(tmp_path):
    text, _, _ = render(tmp_path, BASELINES)  # both committed baselines: the same (write) flush
    assert "different L2 flushes" not in text
    doc = json.loads(open(BASELINES[0]).read())
    doc["probes"]["l2_flush"] = "read of 2 x L2 through L2 before every sample"
    reread = tmp_path / "reread.json"
    reread.write_text(json.dumps(doc))
    text, _, _ = render(tmp_path, [str(reread), BASELINES[1]])
    assert "These runs were timed after different L2 flushes" in text
    assert "read of 2 x L2 through L2" in text and "cudaMemsetAsync of 2 x L2" in text


def test_a_benchmark_without_axes_gets_a_table_too(tmp_path):
    text, _, _ = render(tmp_path, [cpu_run(tmp_path, benchmarks=[{"name": "solo", "real_time": 2.0, "time_unit": "us"}])])
    assert "<h3>solo</h3>" in text and "colspan='0'" not in text


def test_unusable_entries_are_listed_not_dropped(tmp_path):
    path = cpu_run(tmp_path, benchmarks=[{"name": "a/zero", "us_median": 0}, {"name": "a/neg", "real_time": -1.0},
                                         {"name": "a/none"}])
    text, summary, _ = render(tmp_path, [path])
    assert len(summary["problems"]) == 3
    assert all("no usable time" in p for p in summary["problems"]) and "a/neg" in text


@pytest.mark.parametrize("content, message", [
    ("{not json", "not readable JSON"),
    ('{"schema_version": 2, "benchmarks": []}', "schema_version 2 is not supported"),
    ('[1, 2]', "expected a JSON object"),
    ('{"schema_version": 1}', "'benchmarks' must be a list"),
])
def test_bad_input_is_named_with_exit_2(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["html", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.json" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "report.html").exists()


def test_an_unwritable_output_is_named_with_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["html", BASELINES[0], "--out", str(blocker / "sub")]) == 2
    assert "cannot write" in capsys.readouterr().err


def chromium():
    exe = os.environ.get("QH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium not found: ci/bootstrap.sh installs Debian's chromium (or set QH_CHROMIUM)")
    return exe


def browse(path, *args):
    """Headless Chromium on a local file; returns its stdout. Root needs --no-sandbox; the virtual time budget lets
    the page's load handler run before the DOM is dumped."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=10000", *args, f"file://{os.path.abspath(path)}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def rendered_counts(dom):
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken-images="(\d+)"', dom)
    assert images and broken, "the page's load handler did not run"
    return int(images.group(1)), int(broken.group(1))


def test_chromium_renders_every_section_and_figure(tmp_path):
    _, summary, out = render(tmp_path, [cpu_run(tmp_path)] + BASELINES)
    dom = browse(out / "report.html", "--dump-dom")
    assert rendered_counts(dom) == (summary["images"], 0)
    for s in html.SECTIONS:
        assert re.search(rf"<h2 id=\"{s}\">", dom), s
    shot = tmp_path / "shot.png"
    browse(out / "report.html", f"--screenshot={shot}", "--window-size=1400,4000")
    from PIL import Image  # matplotlib's own dependency
    img = Image.open(shot).convert("L")
    assert img.size == (1400, 4000)
    lo, hi = img.getextrema()
    assert hi - lo > 128, "the screenshot is blank"
    keep = os.environ.get("QH_REPORT_SCREENSHOT")  # to look at it: QH_REPORT_SCREENSHOT=/tmp/shot.png pytest ...
    if keep:
        shutil.copy(shot, keep)


def test_chromium_check_catches_a_broken_figure(tmp_path):
    """The negative control of the test above: one figure's data corrupted, the page must count it as broken."""
    text, summary, out = render(tmp_path, BASELINES[:1])
    start = text.index("base64,") + len("base64,")
    (out / "report.html").write_text(text[:start] + "AAAA" + text[start + 200:])
    dom = browse(out / "report.html", "--dump-dom")
    assert rendered_counts(dom) == (summary["images"], 1)
    assert "figures could not be displayed" in dom


def test_a_missing_baselines_directory_is_named(tmp_path, capsys):
    assert main(["html", cpu_run(tmp_path), "--baselines", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "none: no such directory of baselines" in capsys.readouterr().err


def test_baselines_directory_adds_the_gpu_baselines_only(tmp_path):
    _, summary, _ = render(tmp_path, [cpu_run(tmp_path), "--baselines", os.path.dirname(BASELINES[0])])
    assert [r["path"] for r in summary["runs"][1:]] == sorted(BASELINES)  # not cpu-instructions.json
