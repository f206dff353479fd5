#!/usr/bin/env python3
"""Summarizes a block timeline of one Marlin GEMM launch, of the wgmma kernel or the TMA-fed mma.sync one: the CSV
that a build with perf/variants/timeline.patch writes (QH_TIMELINE=M,N,K[,LAUNCH] QH_TIMELINE_OUT=F;
kernels/marlin_timeline.cuh in the patch says what each event is).

  python3 perf/timeline.py F.csv [--blocks]

Prints, in microseconds from the first event: when the blocks start and first see data, when each finishes its
last products and leaves, the tail between the two (the fix-up: its part written, the sum, the exit) for blocks
that summed a tile at the end and for those that did not, and per part count how long a part's write and a tile's
sum took. --blocks adds one line per block with every event. Exit 2 on a file that is not such a CSV.
"""
import argparse
import csv
import statistics
import sys

KINDS = ("start", "data", "computed", "arrived", "summed", "end")


class TimelineError(Exception):
    pass


def load(path):
    """(header dict, {block: [event dicts in time order]}) of a timeline CSV."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise TimelineError(f"{path}: {e.strerror}") from None
    if not lines or not lines[0].startswith("# "):
        raise TimelineError(f"{path}: expected a '# m=... n=...' header line first")
    header = {}
    for field in lines[0][2:].split():
        key, _, value = field.partition("=")
        header[key] = int(value)
    rows = list(csv.DictReader(lines[1:]))
    if not rows or set(rows[0]) != {"block", "sm", "kind", "tile", "value", "ns"}:
        raise TimelineError(f"{path}: expected columns block,sm,kind,tile,value,ns and at least one event")
    blocks = {}
    for i, r in enumerate(rows):
        try:
            e = {k: int(r[k]) for k in ("block", "sm", "kind", "tile", "value", "ns")}
        except (TypeError, ValueError):
            raise TimelineError(f"{path}: event {i + 1} is not six integers: {r}") from None
        if not 0 <= e["kind"] < len(KINDS):
            raise TimelineError(f"{path}: event {i + 1} has an unknown kind {e['kind']}")
        e["us"] = e["ns"] / 1000.0
        blocks.setdefault(e["block"], []).append(e)
    for events in blocks.values():
        events.sort(key=lambda e: e["ns"])
    return header, blocks


def first(events, kind):
    return next((e for e in events if KINDS[e["kind"]] == kind), None)


def last(events, kind):
    return next((e for e in reversed(events) if KINDS[e["kind"]] == kind), None)


def spread(values):
    """{n, min, median, max} of a list (empty: n 0)."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "min": min(values), "median": statistics.median(values), "max": max(values)}


def summarize(blocks):
    """The figures main prints, as a dict (see the module doc)."""
    out = {"blocks": len(blocks), "sms": len({e["sm"] for ev in blocks.values() for e in ev})}
    starts, data, computed, ends = [], [], [], []
    tail_summing, tail_other = [], []
    writes, sums = {}, {}  # by part count: arrived - computed (this block's part), summed - arrived (the sum)
    for events in blocks.values():
        s, d, c, n = first(events, "start"), first(events, "data"), last(events, "computed"), last(events, "end")
        if s:
            starts.append(s["us"])
        if s and d:
            data.append(d["us"] - s["us"])
        if c:
            computed.append(c["us"])
        if n:
            ends.append(n["us"])
        if c and n:
            summed_last = any(KINDS[e["kind"]] == "summed" and e["tile"] == c["tile"] for e in events)
            (tail_summing if summed_last else tail_other).append(n["us"] - c["us"])
        done = {}
        for e in events:
            kind = KINDS[e["kind"]]
            if kind == "computed":
                done[e["tile"]] = e
            elif kind == "arrived" and e["tile"] in done:
                done[e["tile"]]["arrived"] = e
            elif kind == "summed" and e["tile"] in done:
                parts = e["value"]
                arrived = done[e["tile"]].get("arrived")
                if arrived is not None:
                    writes.setdefault(parts, []).append(arrived["us"] - done[e["tile"]]["us"])
                    sums.setdefault(parts, []).append(e["us"] - arrived["us"])
        for tile, c_event in done.items():  # parts this block wrote and did not sum: their write alone
            if "arrived" in c_event and not any(KINDS[e["kind"]] == "summed" and e["tile"] == tile for e in events):
                writes.setdefault("not summed here", []).append(c_event["arrived"]["us"] - c_event["us"])
    out.update(start=spread(starts), first_data=spread(data), last_computed=spread(computed), end=spread(ends),
               tail_summing=spread(tail_summing), tail_other=spread(tail_other),
               part_write={k: spread(v) for k, v in writes.items()}, sum={k: spread(v) for k, v in sums.items()})
    return out


def fmt(s):
    if s["n"] == 0:
        return "none"
    return f"n {s['n']:4d}  min {s['min']:7.2f}  median {s['median']:7.2f}  max {s['max']:7.2f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--blocks", action="store_true", help="one line per block with every event")
    args = ap.parse_args(argv)
    try:
        header, blocks = load(args.csv)
    except TimelineError as e:
        print(f"timeline: {e}", file=sys.stderr)
        return 2
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    s = summarize(blocks)
    print(f"{s['blocks']} blocks on {s['sms']} SMs; times in us from the first event")
    for key, label in (("start", "start"), ("first_data", "first data after start"),
                       ("last_computed", "last products retired"), ("end", "end"),
                       ("tail_summing", "tail (end - last products), summed its last tile"),
                       ("tail_other", "tail, did not sum its last tile")):
        print(f"  {label:50s} {fmt(s[key])}")
    for name, table in (("part written and counted (arrived - computed), by parts of the tile", "part_write"),
                        ("sum and output (summed - arrived), by parts of the tile", "sum")):
        print(f"  {name}:")
        for parts, v in sorted(s[table].items(), key=lambda kv: str(kv[0])):
            print(f"    {str(parts):16s} {fmt(v)}")
    if args.blocks:
        for block, events in sorted(blocks.items()):
            cells = " ".join(f"{KINDS[e['kind']]}:{e['tile']}:{e['value']}@{e['us']:.2f}" for e in events)
            print(f"block {block} sm {events[0]['sm']}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
