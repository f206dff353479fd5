"""report.html and summary.json from one or more runs (qh_report.runs): one self-contained page (figures inline as
PNG data, no external file, no network) with these sections, in this order:

  overview    the runs (current first, committed baselines after) with their GPU, commit and probes; a banner
              when the current run had no GPU (its GPU figures then come from the baselines only)
  checks      pass/fail/skip/error per suite, every failure with its message, skips grouped by reason
  layers      the per-layer GPTQ table (damping, attempts, dead columns, pivot, loss)
  roofline    per GPU run: achieved GB/s against the probed copy curve, TFLOP/s against the roofline
  vs-cublas   per GPU run: marlin/gemm against cuBLAS on the same shape, per shape and M
  cross-gpu   per pair of GPU classes: the model's predicted times against the measured ones, both directions
  benchmarks  one table per benchmark family, the runs side by side (last: the longest part)

summary.json holds the same in numbers (schema_version 1): runs, check counts and failures, problems, the
cross-GPU errors, the sections written and the number of figures.
A script at the end of the page counts images the browser could not decode and says so on the page (and in
body data attributes a test reads); that should never happen.
"""
import base64
import datetime
import html
import json
import math
import os
from collections import OrderedDict

from . import atomic, model, plots, results

SECTIONS = ("overview", "checks", "layers", "roofline", "vs-cublas", "cross-gpu", "benchmarks")
SUMMARY_SCHEMA = 1

STYLE = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:22px} h2{font-size:18px;border-bottom:2px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;font-size:12px;margin:6px 0 14px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top;white-space:nowrap}
td pre,td.wrap{white-space:pre-wrap}
th{background:#f0f0f0} td.l,th.l{text-align:left}
.pass{color:#176d17}.fail,.error{color:#b00;font-weight:bold}.skip{color:#8a6d00}
.banner{background:#fff4d6;border:1px solid #e0b84d;padding:8px 12px;margin:10px 0}
.bad{background:#fde2e2;border:1px solid #d66;padding:8px 12px;margin:10px 0}
pre{white-space:pre-wrap;font-size:11px;margin:0;max-width:900px}
img{max-width:100%;display:block;margin:6px 0 16px}
.flag{color:#b00}
"""

INTEGRITY_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-broken-images', String(broken.length));
  if (broken.length) {
    var d = document.createElement('div');
    d.className = 'bad';
    d.textContent = broken.length + ' of ' + imgs.length + ' figures could not be displayed';
    document.body.insertBefore(d, document.body.firstChild);
  }
});
</script>
"""


def esc(x):
    return html.escape(str(x), quote=True)


def fmt(x, digits=3):
    """A table cell for a value: thousands separators from 10^4, `digits` significant digits below."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if abs(x) >= 1e4:
            return f"{x:,.0f}"
        if abs(x) >= 1:
            return f"{x:,.{max(0, digits - len(str(int(abs(x)))))}f}"
        return f"{x:.{digits}g}"
    return str(x)


def table(header, rows, left=1, groups=None):
    """An HTML table; the first `left` columns are left-aligned; cells are (text, css class) or text (escaped).
    `groups` [(title, span), ...] adds a header row above, each title spanning that many columns."""
    def cell(tag, v, i):
        cls = "l" if i < left else ""
        if isinstance(v, tuple):
            v, extra = v
            cls = f"{cls} {extra}".strip()
        return f"<{tag} class='{cls}'>{v}</{tag}>" if cls else f"<{tag}>{v}</{tag}>"
    out = ["<table>"]
    if groups:
        out.append("<tr>" + "".join(f"<th colspan='{n}'>{esc(t)}</th>" for t, n in groups) + "</tr>")
    out.append("<tr>" + "".join(cell("th", esc(h), i) for i, h in enumerate(header)) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(cell("td", v if isinstance(v, tuple) else esc(v), i) for i, v in enumerate(r))
                   + "</tr>")
    out.append("</table>")
    return "\n".join(out)


class Page:
    def __init__(self):
        self.parts, self.images = [], 0

    def add(self, text):
        self.parts.append(text)

    def image(self, png, alt):
        if png is None:
            return
        self.images += 1
        data = base64.b64encode(png).decode("ascii")
        self.add(f"<img alt='{esc(alt)}' src='data:image/png;base64,{data}'>")


def current(runs):
    return runs[0]


def overview(page, runs):
    cur = current(runs)
    page.add("<h2 id='overview'>Overview</h2>")
    env = cur.doc.get("environment", {})
    if not cur.gpu_class:
        why = (env.get("cuda") or {}).get("unavailable", "no CUDA device was found")
        shown = [r.label for r in runs if r.has_probes]
        page.add(f"<div class='banner'><b>This run had no GPU</b> ({esc(why)}): its checks and CPU benchmarks are its "
                 "own; GPU cases were skipped. GPU figures below come from the committed baselines"
                 f"{': ' + esc(', '.join(shown)) if shown else ' (none were given)'}.</div>")
    rows = []
    for r in runs:
        tool, p = r.doc.get("tool", {}), r.doc.get("probes") if r.has_probes else {}
        prov = r.doc.get("provenance") or {}
        rows.append([r.label, r.role, r.gpu_class or "none", str(tool.get("commit", "?"))[:10],
                     prov.get("date", ""), fmt(p.get("dram_copy_gbs")), fmt(p.get("l2_gbs")),
                     fmt(p.get("tc_fp16_tflops")), fmt(p.get("alu_int_tops")), fmt(p.get("launch_us")),
                     len(r.doc.get("checks") or []), len(r.entries), (esc(r.path), "l wrap")])
    page.add(table(["run", "role", "GPU class", "commit", "date", "copy GB/s", "L2 GB/s", "fp16 TC TFLOP/s",
                    "int Tops", "launch us", "checks", "benchmarks", "file"], rows, left=5))
    page.add(f"<p>Host of the current run: {esc(env.get('host', '?'))}, CPU {esc((env.get('cpu') or {}).get('model', '?'))}"
             f", torch {esc(env.get('torch', '?'))}, compiler {esc(env.get('compiler', '?'))}.</p>")
    flushes = {r.label: results.l2_flush(r.doc) for r in runs if r.has_probes}
    if len(set(flushes.values())) > 1:
        page.add("<div class='banner'><b>These runs were timed after different L2 flushes</b> ("
                 + "; ".join(f"{esc(label)}: {esc(flush)}" for label, flush in flushes.items())
                 + "): a write flush left L2 dirty, and a kernel that writes little paid for writing it back, so "
                 "their times do not compare directly (docs/benchmarks.md); the gate refuses such a pair.</div>")
    problems = [p for r in runs for p in r.problems]
    if problems:
        page.add("<div class='bad'><b>Entries left out</b><ul>" + "".join(f"<li>{esc(p)}</li>" for p in problems)
                 + "</ul></div>")


def check_counts(checks):
    c = OrderedDict((k, 0) for k in ("pass", "fail", "skip", "error"))
    for x in checks:
        c[x.get("status", "error")] = c.get(x.get("status", "error"), 0) + 1
    return c


def holding(runs, key):
    """(run, its non-empty list under `key`) for the runs that have one."""
    return [(r, r.doc[key]) for r in runs if r.doc.get(key)]


def checks_section(page, runs):
    page.add("<h2 id='checks'>Checks</h2>")
    for r, checks in holding(runs, "checks"):
        c = check_counts(checks)
        page.add(f"<h3>{esc(r.label)}: <span class='pass'>{c['pass']} passed</span>, <span class='fail'>{c['fail']} "
                 f"failed</span>, <span class='skip'>{c['skip']} skipped</span>, <span class='error'>{c['error']} "
                 "errors</span></h3>")
        suites = OrderedDict()
        for x in checks:
            suites.setdefault(x.get("suite", "?"), []).append(x)
        rows = []
        for name, xs in suites.items():
            sc = check_counts(xs)
            rows.append([name] + [(str(sc[k]), k if sc[k] and k != "pass" else "") for k in sc]
                        + [fmt(sum(x.get("duration_s") or 0 for x in xs))])
        page.add(table(["suite", "pass", "fail", "skip", "error", "seconds"], rows))
        bad = [x for x in checks if x.get("status") in ("fail", "error")]
        if bad:
            page.add(table(["failed check", "suite", "status", "message"],
                           [[x["name"], x.get("suite", ""), (x["status"], x["status"]),
                             (f"<pre>{esc(x.get('message', ''))}</pre>", "l")] for x in bad], left=4))
        skips = OrderedDict()
        for x in checks:
            if x.get("status") == "skip":
                skips.setdefault(x.get("message") or "(no reason given)", []).append(x["name"])
        if skips:
            page.add(table(["skip reason", "cases", "for example"],
                           [[why, len(names), ", ".join(names[:3])] for why, names in skips.items()], left=1))
        page.add("<details><summary>every check</summary>"
                 + table(["check", "suite", "status", "seconds"],
                         [[x["name"], x.get("suite", ""), (x.get("status", ""), x.get("status", "")),
                           fmt(x.get("duration_s"))] for x in checks], left=3) + "</details>")
    if not holding(runs, "checks"):
        page.add("<p>No run holds checks (benchmark-only files).</p>")


LAYER_COLUMNS = ("name", "path", "bits", "group_size", "desc_act", "damp_initial", "damp_final", "attempts",
                 "float64_retry", "dead_columns", "calib_tokens", "min_pivot", "loss", "seconds")


def layers_section(page, runs):
    page.add("<h2 id='layers'>GPTQ layers</h2>")
    for r, layers in holding(runs, "layers"):
        page.add(f"<h3>{esc(r.label)}</h3>")
        rows = []
        for lay in layers:
            row = [fmt(lay.get(k)) for k in LAYER_COLUMNS]
            if (lay.get("attempts") or 1) > 1:  # the damping escalated: the non-PD recovery at work
                row[7] = (row[7], "skip")
            rows.append(row)
        page.add(table(list(LAYER_COLUMNS), rows, left=2))
    if not holding(runs, "layers"):
        page.add("<p>No run quantized a layer.</p>")


# (key, header, the counters an entry needs for the column): a family's table has the columns some entry fills.
METRICS = (("GBps", "GB/s", ("GBps", "bytes_per_second")), ("bw_fraction", "bw frac", ("bw_fraction",)),
           ("tc_fraction", "tc frac", ("tc_fraction",)), ("roofline_efficiency", "roofline eff", ("roofline_efficiency",)),
           ("vs_cublas", "vs cuBLAS", ("vs_cublas",)))


def metric_columns(entries):
    return [("us", "time us")] + [(key, header) for key, header, needs in METRICS
                                  if any(k in e.raw for e in entries for k in needs)]


def metric(e, key):
    if key == "us":
        noise = e.raw.get("noise")
        text = fmt(e.us)
        return f"{text} ±{100 * noise:.1f}%" if isinstance(noise, (int, float)) and noise > 0 else text
    if key == "GBps" and "GBps" not in e.raw and "bytes_per_second" in e.raw:
        return fmt(e.raw["bytes_per_second"] / 1e9)
    return fmt(e.raw.get(key))


def benchmarks_section(page, runs):
    page.add("<h2 id='benchmarks'>Benchmarks</h2>")
    families = OrderedDict()
    for r in runs:
        for e in r.entries:
            families.setdefault(e.family, OrderedDict()).setdefault(e.axes, {})[r.label] = e
    if not families:
        page.add("<p>No run holds benchmarks.</p>")
        return
    page.add("<p>Times are medians (± the robust noise of the samples); fractions are of the probes of the same run "
             "(docs/benchmarks.md). <span class='flag'>!</span> marks a figure flagged as a measurement error.</p>")
    for fam, by_axes in families.items():
        labels = [r.label for r in runs if any(r.label in v for v in by_axes.values())]
        entries = [e for v in by_axes.values() for e in v.values()]
        cols = metric_columns(entries)
        axis_names = list(OrderedDict.fromkeys(k for axes in by_axes for k, _ in axes))
        header = axis_names + [c[1] for _ in labels for c in cols]
        groups = ([("", len(axis_names))] if axis_names else []) + [(lab, len(cols)) for lab in labels]
        rows = []
        for axes, per_run in by_axes.items():
            d = dict(axes)
            row = [d.get(k, "") for k in axis_names]
            for lab in labels:
                e = per_run.get(lab)
                for key, _ in cols:
                    if e is None:
                        row.append("")
                    elif e.raw.get("measurement_error"):
                        row.append((esc(metric(e, key)) + " <span class='flag'>!</span>", "flag"))
                    else:
                        row.append(metric(e, key))
            rows.append(row)
        page.add(f"<h3>{esc(fam)}</h3>")
        page.add(table(header, rows, left=len(axis_names), groups=groups))


def gpu_runs(runs):
    return [r for r in runs if r.has_probes and any(e.gpu for e in r.entries)]


def roofline_section(page, runs):
    page.add("<h2 id='roofline'>Roofline</h2>")
    shown = gpu_runs(runs)
    if not shown:
        page.add("<p>No GPU run: nothing to place against probed limits.</p>")
    for r in shown:
        page.image(plots.roofline(r), f"roofline of {r.label}")


def vs_cublas_section(page, runs):
    page.add("<h2 id='vs-cublas'>Marlin GEMM against cuBLAS</h2>")
    drawn = 0
    for r in gpu_runs(runs):
        png = plots.vs_cublas(r)
        drawn += png is not None
        page.image(png, f"marlin/gemm vs cuBLAS on {r.label}")
    if not drawn:
        page.add("<p>No run holds marlin/gemm entries with vs_cublas.</p>")


def cross_pairs(runs):
    """(A, B, rows) for every ordered pair of GPU runs of different classes, rows from model.compare."""
    out = []
    rs = gpu_runs(runs)
    for a in rs:
        for b in rs:
            if a is not b and a.gpu_class != b.gpu_class:
                rows = model.compare(a.doc, b.doc)
                if rows:
                    out.append((a, b, rows))
    return out


def cross_gpu_section(page, runs, pairs):
    page.add("<h2 id='cross-gpu'>Across GPUs: measured against predicted</h2>")
    if not pairs:
        page.add("<p>Fewer than two GPU classes among the runs: nothing to carry across.</p>")
        return
    page.add("<p>The cross-GPU model (docs/benchmarks.md) predicts each benchmark's time on GPU B from its run on GPU A "
             "and B's probes; nothing is fitted on these pairs. Grey: the naive rule (time x copy-bandwidth ratio).</p>")
    rows = []
    for a, b, rs in pairs:
        s = model.summary(rs)
        naive = model.bandwidth_ratio_summary(a.doc, b.doc)
        rows.append([f"{a.label} -> {b.label}", s["count"], f"{100 * s['median']:.1f} %", f"{100 * s['p90']:.1f} %",
                     f"{100 * s['max']:.1f} %", f"{100 * naive['median']:.1f} %" if naive["median"] is not None else ""])
    page.add(table(["prediction", "benchmarks", "median |error|", "p90", "max", "bandwidth ratio: median"], rows))
    for a, b, rs in pairs:
        page.image(plots.cross_gpu(a, b, rs), f"cross-GPU prediction {a.label} to {b.label}")
        page.add(f"<details><summary>{esc(a.gpu_class)} -> {esc(b.gpu_class)}: every benchmark</summary>"
                 + table(["benchmark", f"{a.gpu_class} us", f"{b.gpu_class} us", "predicted us", "error"],
                         [[r["name"], fmt(r["measured_a_us"]), fmt(r["measured_b_us"]), fmt(r["predicted_b_us"]),
                           (f"{100 * r['error']:+.1f} %", "fail" if abs(r["error"]) > 0.1 else "")]
                          for r in rs]) + "</details>")


def summary_doc(runs, pairs, images):
    cur = current(runs)
    checks = cur.doc.get("checks") or []
    return {
        "schema_version": SUMMARY_SCHEMA,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "current": cur.path,
        "gpu": cur.gpu_class is not None,
        "runs": [{"label": r.label, "role": r.role, "path": r.path, "gpu_class": r.gpu_class,
                  "commit": r.doc.get("tool", {}).get("commit"), "checks": check_counts(r.doc.get("checks") or []),
                  "benchmarks": len(r.entries), "layers": len(r.doc.get("layers") or [])} for r in runs],
        "checks": check_counts(checks),
        "failed_checks": [c["name"] for c in checks if c.get("status") in ("fail", "error")],
        "problems": [p for r in runs for p in r.problems],
        "cross_gpu": [dict({"from": a.label, "to": b.label}, **model.summary(rs)) for a, b, rs in pairs],
        "sections": list(SECTIONS),
        "images": images,
    }


def render(runs):
    """(html text, summary dict) for runs; runs[0] is the current run."""
    page = Page()
    cur = current(runs)
    c = check_counts(cur.doc.get("checks") or [])
    page.add(f"<h1>qharness report</h1><p>{esc(cur.label)}: {c['pass']} passed, {c['fail']} failed, {c['skip']} "
             f"skipped, {c['error']} errors; {len(runs) - 1} other run(s) beside it. Generated "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by qh_report.</p>")
    pairs = cross_pairs(runs)
    overview(page, runs)
    checks_section(page, runs)
    layers_section(page, runs)
    roofline_section(page, runs)
    vs_cublas_section(page, runs)
    cross_gpu_section(page, runs, pairs)
    benchmarks_section(page, runs)
    body = "\n".join(page.parts)
    text = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>qharness report</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n{INTEGRITY_SCRIPT}</body></html>\n")
    return text, summary_doc(runs, pairs, page.images)


def write(runs, out_dir):
    """Writes out_dir/report.html and out_dir/summary.json atomically; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    text, summary = render(runs)
    report, summary_path = os.path.join(out_dir, "report.html"), os.path.join(out_dir, "summary.json")
    atomic.write_text(report, text)
    atomic.write_text(summary_path, json.dumps(summary, indent=1) + "\n")
    return report, summary_path
