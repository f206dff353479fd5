"""The report's figures (matplotlib, headless), each returned as PNG bytes for inline embedding, or None when a run
has nothing to draw. Axes are logarithmic where the data spans decades (bytes, times, intensities)."""
import io
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from . import model  # noqa: E402

DPI = 96


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _colours(families):
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(sorted(families))}


def _scatter(ax, entries, x, y, colour, label):
    """Entries as dots; those flagged as measurement errors (above a probed limit) as crosses, so an impossible
    figure is visibly not a result."""
    ok = [e for e in entries if not e.raw.get("measurement_error")]
    bad = [e for e in entries if e.raw.get("measurement_error")]
    ax.scatter([x(e) for e in ok], [y(e) for e in ok], s=18, color=colour, label=label, zorder=3)
    if bad:
        ax.scatter([x(e) for e in bad], [y(e) for e in bad], s=30, color=colour, marker="x", zorder=3,
                   label=f"{label} (flagged)")


def roofline(run):
    """Two panels for a GPU run: achieved GB/s against bytes moved with the probed copy curve (a small transfer
    cannot reach the asymptotic bandwidth, so the curve, not one line, is the limit), and the classic roofline:
    TFLOP/s against flops per byte under min(intensity x copy bandwidth, tensor-core probe)."""
    if not run.has_probes:
        return None
    gpu = [e for e in run.entries if e.gpu and e.raw.get("bytes", 0) > 0]
    if not gpu:
        return None
    p = run.doc["probes"]
    colours = _colours({e.family for e in gpu})
    fig, (mem, comp) = plt.subplots(1, 2, figsize=(12, 4.6))

    curve = sorted((c["bytes"], c["bytes"] / c["seconds"] / 1e9) for c in p["copy_curve"])
    xs = [c[0] for c in curve]
    mem.plot(xs, [c[1] for c in curve], "k-", lw=2, label="probed copy curve")
    mem.axhline(p["dram_copy_gbs"], color="k", ls=":", lw=1, label=f"copy probe {p['dram_copy_gbs']:.0f} GB/s")
    for fam in sorted(colours):
        _scatter(mem, [e for e in gpu if e.family == fam], lambda e: e.raw["bytes"],
                 lambda e: e.raw["bytes"] / e.us * 1e-3, colours[fam], fam)
    mem.set(xscale="log", yscale="log", xlabel="bytes moved per call", ylabel="achieved GB/s",
            title="memory side")
    mem.grid(True, which="both", alpha=0.3)
    mem.legend(fontsize=7, loc="best")

    bw_tbs, tc = p["dram_copy_gbs"] / 1e3, p["tc_fp16_tflops"]
    with_flops = [e for e in gpu if e.raw.get("flops", 0) > 0]
    if with_flops:
        ai = [e.raw["flops"] / e.raw["bytes"] for e in with_flops]
        lo, hi = min(ai + [tc / bw_tbs]) / 4, max(ai + [tc / bw_tbs]) * 4
        grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        comp.plot(grid, [min(x * bw_tbs, tc) for x in grid], "k-", lw=2,
                  label=f"roof: {p['dram_copy_gbs']:.0f} GB/s, {tc:.0f} TFLOP/s")
        for fam in sorted({e.family for e in with_flops}):
            _scatter(comp, [e for e in with_flops if e.family == fam], lambda e: e.raw["flops"] / e.raw["bytes"],
                     lambda e: e.raw["flops"] / e.us * 1e-6, colours[fam], fam)
        comp.set(xscale="log", yscale="log")
        comp.legend(fontsize=7, loc="lower right")
    else:
        comp.text(0.5, 0.5, "no benchmark declares flops", ha="center", va="center", transform=comp.transAxes)
    comp.set(xlabel="flops per byte", ylabel="achieved TFLOP/s", title="compute side (roofline)")
    comp.grid(True, which="both", alpha=0.3)
    fig.suptitle(run.label, fontsize=10)
    return _png(fig)


def _axis(entry, key):
    return dict(entry.axes).get(key)


def vs_cublas(run):
    """Bars of vs_cublas (cuBLAS time / ours) per (K, N) shape, one bar per M, a panel per group size and dtype;
    the line at 1 is parity."""
    marlin = [e for e in run.entries if e.family == "marlin/gemm" and "vs_cublas" in e.raw]
    if not marlin:
        return None
    variants = OrderedDict()
    for e in marlin:
        variants.setdefault((_axis(e, "group"), _axis(e, "bf16")), []).append(e)
    fig, axes = plt.subplots(1, len(variants), figsize=(5.2 * len(variants), 3.8), squeeze=False)
    for ax, ((group, bf16), es) in zip(axes[0], variants.items()):
        shapes = list(OrderedDict.fromkeys(f"{_axis(e, 'K')}x{_axis(e, 'N')}" for e in es))
        ms = sorted({int(_axis(e, "M")) for e in es})
        width = 0.8 / len(ms)
        cmap = plt.get_cmap("viridis")
        for j, m in enumerate(ms):
            vals = {f"{_axis(e, 'K')}x{_axis(e, 'N')}": e.raw["vs_cublas"] for e in es if int(_axis(e, "M")) == m}
            xs = [i + (j - (len(ms) - 1) / 2) * width for i, s in enumerate(shapes) if s in vals]
            ax.bar(xs, [vals[s] for s in shapes if s in vals], width, color=cmap(j / max(1, len(ms) - 1)),
                   label=f"M={m}")
        ax.axhline(1.0, color="r", lw=1)
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, rotation=30, fontsize=7)
        ax.set(ylabel="cuBLAS time / ours", xlabel="K x N",
               title=f"group {group}, {'bf16' if bf16 == '1' else 'fp16'}")
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_ylim(0, 1.3 * max(e.raw["vs_cublas"] for e in es))
        ax.legend(fontsize=7, ncol=len(ms), loc="upper center")
    fig.suptitle(f"marlin/gemm vs cuBLAS: {run.label}", fontsize=10)
    return _png(fig)


def cross_gpu(run_a, run_b, rows):
    """Two panels for the prediction of B's times from A's run: predicted against measured (log-log), and the
    relative error against the measured time, for the model and, in grey for contrast, the bandwidth-ratio rule;
    the band is +-10 %."""
    if not rows:
        return None
    fig, (ax, err) = plt.subplots(1, 2, figsize=(12, 4.4))
    measured = [r["measured_b_us"] for r in rows]
    ratio = run_a.doc["probes"]["dram_copy_gbs"] / run_b.doc["probes"]["dram_copy_gbs"]
    naive = [r["measured_a_us"] * ratio for r in rows]
    ax.scatter(measured, naive, s=12, color="0.6", label="time x bandwidth ratio")
    ax.scatter(measured, [r["predicted_b_us"] for r in rows], s=14, color="tab:blue", label="cross-GPU model")
    lo, hi = min(measured) / 1.5, max(measured) * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=1)
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="k", alpha=0.08, label="+-10 %")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel=f"measured us on {run_b.gpu_class}",
           ylabel="predicted us")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    err.scatter(measured, [100 * (n / m - 1) for n, m in zip(naive, measured)], s=12, color="0.6",
                label="time x bandwidth ratio")
    err.scatter(measured, [100 * r["error"] for r in rows], s=14, color="tab:blue", label="cross-GPU model")
    err.axhspan(-10, 10, color="k", alpha=0.08)
    err.axhline(0, color="k", lw=1)
    err.set(xscale="log", xlabel=f"measured us on {run_b.gpu_class}", ylabel="prediction error %")
    err.grid(True, which="both", alpha=0.3)
    err.legend(fontsize=7)
    s = model.summary(rows)
    fig.suptitle(f"{run_a.label} -> {run_b.label}: median |error| {100 * s['median']:.1f} % over {s['count']} "
                 "benchmarks", fontsize=10)
    return _png(fig)
