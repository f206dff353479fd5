"""The Python writers (report.html, summary.json, baselines: qh_report.atomic) are crash-safe: a writer killed with
SIGKILL at a random point leaves the old complete file or the new complete file, never a partial one (the C++
writers' kill test is conformance/crash_safe_write_test.cpp; this is the same test for these)."""
import hashlib
import os
import random
import signal
import subprocess
import sys
import time

REPORTS = os.path.join(os.path.dirname(__file__), "..")
TRIALS = 50
SIZE = 24 << 20  # large enough that a write takes tens of milliseconds

WRITER = """
import sys
from qh_report import atomic
path, fill, atomically = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
text = fill * {size}
if atomically:
    atomic.write_text(path, text)
else:  # the negative control: what a plain write leaves behind
    with open(path, "w") as f:
        f.write(text)
"""


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def start(path, fill, atomically):
    return subprocess.Popen([sys.executable, "-c", WRITER.format(size=SIZE), path, fill, "1" if atomically else "0"],
                            env=dict(os.environ, PYTHONPATH=REPORTS))


def kill_trials(tmp_path, atomically, seed):
    """Outcomes of TRIALS writes of 'b' * SIZE over a complete 'a' * SIZE, each killed after a random delay up to
    1.2 times a calibrated complete write: counts of the destination afterwards being the old, the new or a
    partial file."""
    path = str(tmp_path / "report.html")
    old, new = "a" * SIZE, "b" * SIZE
    with open(path, "w") as f:
        f.write(new)
    expected_new = digest(path)
    t0 = time.monotonic()
    start(path, "b", atomically).wait()
    full = time.monotonic() - t0
    rng = random.Random(seed)
    counts = {"old": 0, "new": 0, "partial": 0}
    for _ in range(TRIALS):
        with open(path, "w") as f:
            f.write(old)
        expected_old = digest(path)
        p = start(path, "b", atomically)
        time.sleep(rng.uniform(0, 1.2 * full))
        p.send_signal(signal.SIGKILL)
        p.wait()
        got = digest(path)
        counts["old" if got == expected_old else "new" if got == expected_new else "partial"] += 1
        for leftover in tmp_path.glob("report.html.tmp-*"):  # a killed writer's temp file, never the destination
            leftover.unlink()
    return counts


def test_a_killed_report_writer_leaves_the_old_or_the_new_file(tmp_path):
    counts = kill_trials(tmp_path, atomically=True, seed=1)
    assert counts["partial"] == 0, counts
    # Kills before the rename (destination still old) are the ones that could have left a partial file.
    assert counts["old"] >= 10, f"too few kills landed before the write finished to mean anything: {counts}"


def test_the_kill_test_catches_a_plain_write(tmp_path):
    """Negative control: the same kills against a non-atomic write must leave a partial file at least once."""
    assert kill_trials(tmp_path, atomically=False, seed=2)["partial"] > 0
