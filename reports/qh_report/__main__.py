"""python -m qh_report COMMAND ...

  model A.json B.json [--exponent E]   predict B's GPU benchmark times from run A and B's probes, print the table
                                      and the error summary, both directions (docs/benchmarks.md)
  baseline IN.json OUT.json --command "how it was run" [--note TEXT]
                                      write a committed baseline (fixtures/baselines/): trimmed, with provenance
  gate --baseline B.json --current C.json [--min-effect 0.03] [--alpha 0.001] [--model-error 0.11]
       [--probe-shift 0.08]           per benchmark: regressed / improved / unchanged / not compared (qh_report.gate);
                                      a warning first where the two runs' probes (same GPU class) differ
  instructions --baseline B.json --current C.json [--max-increase 0.02]
                                      CPU instruction counts (perf/cpu_instructions.py) against a baseline
  html CURRENT.json [OTHER.json ...] [--baselines DIR] [--out DIR]
                                      merge the runs (the first is the current one; others and every committed
                                      baseline in --baselines beside it) into DIR/report.html and
                                      DIR/summary.json (qh_report.html; default DIR: the first file's directory)

Exit status: 0 done (gate: no regression), 1 gate: a regression, 2 bad input (the message names the file and what
is wrong).
"""
import argparse
import math
import os
import sys

from . import baseline, gate, html, instructions, model, results, runs


def print_model(doc_a, doc_b, exponent):
    for x, y in ((doc_a, doc_b), (doc_b, doc_a)):
        rows = model.compare(x, y, exponent)
        ca, cb = results.gpu_class(x), results.gpu_class(y)
        print(f"\n{ca} -> {cb}: {len(rows)} benchmarks")
        print(f"{'benchmark':70s} {'A us':>10s} {'B us':>10s} {'pred us':>10s} {'error':>7s}")
        for r in rows:
            print(f"{r['name'][:70]:70s} {r['measured_a_us']:10.1f} {r['measured_b_us']:10.1f} "
                  f"{r['predicted_b_us']:10.1f} {100 * r['error']:+6.1f}%")
        s, naive = model.summary(rows), model.bandwidth_ratio_summary(x, y)
        print(f"model: median |error| {100 * s['median']:.1f}%, p90 {100 * s['p90']:.1f}%, max {100 * s['max']:.1f}%; "
              f"bandwidth ratio alone: median {100 * naive['median']:.1f}%")


def print_gate(verdicts, shifts):
    for key, (b, c) in shifts.items():
        what = ("a regression bound by it may be the machine (a power or clock cap, a throttled or shared GPU), not "
                "the code" if c < b else "the baseline's machine was the slower: an improvement bound by it may be "
                "the machine, and a regression may be hidden")
        print(f"warning: same GPU class, but {gate.describe_shift(key, (b, c))}: {what}")
    order = {"regressed": 0, "improved": 1, "not compared": 2, "unchanged": 3}
    counts = {k: sum(v.status == k for v in verdicts) for k in order}
    print(f"{'benchmark':70s} {'status':13s} {'ratio':>7s} {'p':>8s}  reason")
    for v in sorted(verdicts, key=lambda v: order[v.status]):
        if v.status == "unchanged":
            continue
        ratio = "" if math.isnan(v.ratio) else f"{v.ratio:.3f}"
        p = "" if math.isnan(v.p_value) else f"{v.p_value:.1e}"
        print(f"{v.name[:70]:70s} {v.status:13s} {ratio:>7s} {p:>8s}  {v.reason}")
    print(", ".join(f"{n} {k}" for k, n in counts.items()))
    return 1 if counts["regressed"] else 0


def print_instructions(rows, max_increase):
    for name, status, ratio in rows:
        shown = "" if ratio is None else f"{ratio - 1:+.2%}"
        print(f"{name[:70]:70s} {status:13s} {shown:>8s}")
    regressed = [r for r in rows if r[1] == "regressed"]
    print(f"{len(regressed)} above +{max_increase:.0%} instructions per call of {len(rows)} benchmarks")
    return 1 if regressed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m qh_report", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("model", help="cross-GPU prediction table for two runs")
    m.add_argument("a")
    m.add_argument("b")
    m.add_argument("--exponent", type=float, default=model.EXPONENT, help="inf for a hard maximum")
    b = sub.add_parser("baseline", help="write a committed baseline from a results.json")
    b.add_argument("input")
    b.add_argument("output")
    b.add_argument("--command", required=True, dest="how")
    b.add_argument("--note", default="")
    g = sub.add_parser("gate", help="compare a run with a baseline; exit 1 on a regression")
    g.add_argument("--baseline", required=True)
    g.add_argument("--current", required=True)
    g.add_argument("--min-effect", type=float, default=gate.MIN_EFFECT)
    g.add_argument("--alpha", type=float, default=gate.ALPHA)
    g.add_argument("--model-error", type=float, default=gate.MODEL_ERROR)
    g.add_argument("--probe-shift", type=float, default=gate.PROBE_SHIFT)
    c = sub.add_parser("instructions", help="CPU instruction counts against a baseline; exit 1 on an increase")
    c.add_argument("--baseline", required=True)
    c.add_argument("--current", required=True)
    c.add_argument("--max-increase", type=float, default=instructions.MAX_INCREASE)
    h = sub.add_parser("html", help="report.html + summary.json for one or more runs")
    h.add_argument("inputs", nargs="+", metavar="RESULTS.json")
    h.add_argument("--out", help="output directory (default: the first file's directory)")
    h.add_argument("--baselines", help="a directory of committed baselines (fixtures/baselines) to add")
    args = ap.parse_args(argv)
    try:
        if args.command == "html":
            out = args.out or os.path.dirname(os.path.abspath(args.inputs[0]))
            paths = args.inputs + (runs.baseline_files(args.baselines) if args.baselines else [])
            report, summary = html.write(runs.load_runs(paths), out)
            print(f"wrote {report} and {summary}")
        elif args.command == "model":
            print_model(results.load(args.a), results.load(args.b), args.exponent)
        elif args.command == "instructions":
            rows = instructions.compare(instructions.load_counts(args.baseline), instructions.load_counts(args.current),
                                        args.max_increase)
            return print_instructions(rows, args.max_increase)
        elif args.command == "gate":
            base_doc, cur_doc = results.load(args.baseline), results.load(args.current)
            verdicts = gate.gate(base_doc, cur_doc, args.min_effect, args.alpha, args.model_error, args.probe_shift)
            return print_gate(verdicts, gate.probe_shifts(base_doc, cur_doc, args.probe_shift))
        else:
            baseline.write_atomically(args.output, baseline.make(results.load(args.input), args.how, args.note))
            print(f"wrote {args.output}")
    except results.ResultsError as e:
        print(f"qh_report: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an output directory or file that cannot be written
        print(f"qh_report: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
