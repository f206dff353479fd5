"""Several results.json files as one set of runs for the report: each run gets a label and a role (the first file is
the current run; files with `provenance` are committed baselines), and its benchmark entries are split into family
and axes. Entries the report cannot use (no time, a zero or negative time) are not dropped silently: they become
problems the report lists."""
import glob
import json
import math
import os
from dataclasses import dataclass, field

from . import results


@dataclass
class Entry:
    name: str
    family: str  # the name's components without ':' ("marlin/gemm")
    axes: tuple  # (("M", "16"), ("K", "4096"), ...) in the name's order
    us: float  # median microseconds
    raw: dict
    gpu: bool  # timed by the GPU harness (CUDA events), not Google Benchmark's CPU timer


@dataclass
class Run:
    label: str
    role: str  # current | baseline | run
    path: str
    doc: dict
    gpu_class: str = None
    entries: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    @property
    def has_probes(self):
        """Whether the run's probes are what the model and the plots read (results.probes' rule)."""
        try:
            results.probes(self.doc)
            return True
        except results.ResultsError:
            return False


TIME_UNITS_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def split_name(name):
    parts = name.split("/")
    family = "/".join(p for p in parts if ":" not in p)
    axes = tuple(tuple(p.split(":", 1)) for p in parts if ":" in p)
    return family, axes


def entry_time_us(b):
    """Median microseconds of an entry: the harness's us_median, else Google Benchmark's real_time in its unit."""
    if "us_median" in b:
        return b["us_median"]
    unit = TIME_UNITS_US.get(b.get("time_unit", "ns"))
    t = b.get("real_time")
    if unit is None or not isinstance(t, (int, float)):
        return None
    return t * unit


def make_run(doc, index):
    cls = results.gpu_class(doc)
    prov = doc.get("provenance")
    if isinstance(prov, dict):
        role = "baseline"
        label = f"{cls or 'no GPU'} baseline ({prov.get('date', '?')})"
    else:
        role = "current" if index == 0 else "run"
        host = doc.get("environment", {}).get("host", "?")
        label = f"{cls} ({host})" if cls else f"no GPU ({host})"
        if index > 0:
            label = f"run {index + 1}: {label}"
    run = Run(label, role, doc["_path"], doc, cls)
    for b in doc["benchmarks"]:
        us = entry_time_us(b)
        if not isinstance(us, (int, float)) or not math.isfinite(us) or us <= 0:
            run.problems.append(f"{doc['_path']}: benchmark {b['name']} has no usable time ({us!r}); left out")
            continue
        family, axes = split_name(b["name"])
        run.entries.append(Entry(b["name"], family, axes, float(us), b, "us_median" in b))
    return run


def load_runs(paths):
    """Runs for the files at `paths` (ResultsError names the file that cannot be read). Two runs with the same
    label get a number, so columns stay apart."""
    runs = [make_run(results.load(p), i) for i, p in enumerate(paths)]
    seen = {}
    for r in runs:
        n = seen.get(r.label, 0)
        seen[r.label] = n + 1
        if n:
            r.label = f"{r.label} #{n + 1}"
    return runs


def baseline_files(directory):
    """The committed benchmark baselines in `directory`: results.json files with provenance (qh_report.baseline);
    other JSON there (the CPU instruction counts) is not a run. Sorted by name, so the order is stable."""
    if not os.path.isdir(directory):
        raise results.ResultsError(f"{directory}: no such directory of baselines")
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise results.ResultsError(f"{path}: not readable JSON ({e})") from None
        if isinstance(doc, dict) and doc.get("schema_version") is not None and "provenance" in doc:
            out.append(path)
    return out
