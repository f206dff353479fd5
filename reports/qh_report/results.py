"""Loading results.json (docs/results.md) with clear errors: a malformed or unsupported file names itself and what
was wrong, never a traceback (ResultsError; the CLI prints it and exits 2)."""
import json
import os

SCHEMA_VERSION = 1


class ResultsError(Exception):
    """A results file that cannot be used: the message names the file and the rule it breaks."""


def load(path):
    """The parsed results.json at `path`, checked for schema_version and the fields the model and reports read."""
    if not os.path.exists(path):
        raise ResultsError(f"{path}: no such file")
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ResultsError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ResultsError(f"{path}: expected a JSON object at the top level, found {type(doc).__name__}")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(f"{path}: schema_version {version!r} is not supported (this qh_report reads {SCHEMA_VERSION})")
    benchmarks = doc.get("benchmarks")
    if not isinstance(benchmarks, list):
        raise ResultsError(f"{path}: 'benchmarks' must be a list")
    for i, b in enumerate(benchmarks):
        if not isinstance(b, dict) or not isinstance(b.get("name"), str):
            raise ResultsError(f"{path}: benchmarks[{i}] has no name")
    doc["_path"] = path
    return doc


def gpu_class(doc):
    """"<name> <memory GiB>GB" of the first GPU (DESIGN.md: a GPU class is the name plus the memory size), or None."""
    gpus = doc.get("environment", {}).get("gpus") or []
    if not gpus:
        return None
    g = gpus[0]
    return f"{g.get('name', '?')} {round(g.get('memory', 0) / 2**30)}GiB"


def gpu_benchmarks(doc):
    """{name: entry} of the entries timed on the GPU by the harness (they carry us_median); CPU ones excluded."""
    out = {}
    for b in doc["benchmarks"]:
        if "us_median" not in b:
            continue
        if not (isinstance(b["us_median"], (int, float)) and b["us_median"] > 0):
            raise ResultsError(f"{doc['_path']}: benchmark {b['name']} has a non-positive time {b['us_median']!r}")
        out[b["name"]] = b
    return out


# The flush of runs whose probes do not name one: they predate the field, when every sample followed a write of 2 x L2.
WRITE_FLUSH = "cudaMemsetAsync of 2 x L2 before every sample"


def l2_flush(doc):
    """The L2 flush a run's samples followed (probes.l2_flush, perf/measure.h), or None for a run without probes."""
    p = doc.get("probes")
    return p.get("l2_flush", WRITE_FLUSH) if isinstance(p, dict) else None


def probes(doc):
    """The GPU probes of a run; ResultsError when it has none (a run without a GPU cannot be modelled)."""
    p = doc.get("probes")
    needed = ("dram_copy_gbs", "tc_fp16_tflops", "launch_us", "copy_curve")
    if not isinstance(p, dict) or any(k not in p for k in needed):
        raise ResultsError(f"{doc['_path']}: no GPU probes (needs {', '.join(needed)}; was it run on a GPU?)")
    for k in ("dram_copy_gbs", "tc_fp16_tflops"):
        if not (isinstance(p[k], (int, float)) and p[k] > 0):
            raise ResultsError(f"{doc['_path']}: probe {k} = {p[k]!r} is not a positive number")
    return p
