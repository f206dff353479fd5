"""Committed baselines (fixtures/baselines/): a results.json of a benchmark run trimmed to what the model, the
reports and the gate read, with provenance. Samples are thinned to at most MAX_SAMPLES per benchmark, evenly over
the run (order kept), so a file stays under the fixtures' 1 MB limit; the median and counters are the run's own."""
import datetime
import json

from . import atomic, results

MAX_SAMPLES = 64
KEEP_TOP = ("schema_version", "tool", "environment", "probes")


def thin(values, limit=MAX_SAMPLES):
    if len(values) <= limit:
        return list(values)
    step = len(values) / limit
    return [values[int(i * step)] for i in range(limit)]


def make(doc, command, note=""):
    """The baseline document for results `doc` (see module doc); `command` is how it was produced."""
    cls = results.gpu_class(doc)
    if cls is None:
        raise results.ResultsError(f"{doc['_path']}: no GPU in its environment; a baseline is a GPU run")
    results.probes(doc)
    out = {k: doc[k] for k in KEEP_TOP if k in doc}
    out["provenance"] = {"gpu_class": cls, "date": datetime.date.today().isoformat(),
                         "commit": doc.get("tool", {}).get("commit", "unknown"), "command": command, "note": note}
    out["benchmarks"] = []
    for b in doc["benchmarks"]:
        b = dict(b)
        if isinstance(b.get("samples"), dict):
            s = dict(b["samples"])
            s["seconds"] = thin(s.get("seconds", []))
            s["sm_mhz"] = thin(s.get("sm_mhz", []))
            b["samples"] = s
        out["benchmarks"].append(b)
    return out


def write_atomically(path, doc):
    """The baseline as indented JSON, written atomically (qh_report.atomic)."""
    atomic.write_text(path, json.dumps(doc, indent=1) + "\n")
