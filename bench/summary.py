"""Issue 11's figures as ratios, from the JSON lines of one run of bench/face (--json),
bench/kernel's bench_kernel.py (--json) and bench/routing (--json), read from the files named on the
command line.

    python bench/summary.py face.jsonl kernel.jsonl routing.jsonl

Prints W1–W9 per tool (medians; MB/s for W4/W5) with splitbrain's round trips, its ratio to the best
peer and to raw C++ ZeroMQ with CURVE, W8/W8b connect, W6 through box.run against the same function
run locally, the kernel's first cell against ipykernel, what splitbrain costs outside any slave's
context (issue 9 point 9), and each of the issues' goals."""

from __future__ import annotations

import json
import sys

PEERS = ("execnet", "zmq", "rpyc")
WORKLOADS = ("W1", "W2", "W3", "W4r", "W4w", "W5r", "W5w", "W6", "W6run", "W7", "W8", "W8b", "W9")
RAW_FOR = {"W4r": "raw_curve.read_1x64MiB", "W4w": "raw_curve.write_1x64MiB", "W5r": "raw_curve.read_64x1MiB",
           "W5w": "raw_curve.write_64x1MiB"}
# (workload, against, goal): "≤ x" on splitbrain's time over theirs, "≥ x" on throughput over theirs.
GOALS = [("W1", "raw", "≤ 1.5"), ("W1", "execnet", "≤ 1.2"), ("W9", "execnet", "≤ 1.2"), ("W3", "execnet", "≤ 2"),
         ("W6run", "local", "≤ 1.5"), ("W4r", "raw", "≥ 0.6"), ("W4w", "raw", "≥ 0.6"), ("W5r", "execnet", "≥ 1"),
         ("W5w", "execnet", "≥ 1")]


def load(paths):
    figures, kernel, routing = {}, None, []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line of another tool's indented JSON (bench/kernel's breakdown)
                    continue
                if record.get("bench") == "kernel":
                    kernel = record
                elif record.get("bench") == "routing":
                    routing.append(record)
                elif "name" in record and record.get("n"):
                    figures[record["name"]] = record
    return figures, kernel, routing


def time_of(fig, nbytes=None):
    """Seconds for the figure's work, scaled to nbytes when both are bulk transfers."""
    if fig is None:
        return None
    t = fig["median_s"]
    if nbytes and fig.get("bytes"):
        t *= nbytes / fig["bytes"]
    return t


def shown(fig):
    if fig is None:
        return "—"
    if fig.get("bytes"):
        return f"{fig['bytes'] / fig['median_s'] / 1e6:.0f} MB/s"
    t = fig["median_s"]
    if t >= 1:
        return f"{t:.2f} s"
    return f"{t * 1e3:.2f} ms" if t >= 1e-3 else f"{t * 1e6:.0f} µs"


def main():
    figures, kernel, routing = load(sys.argv[1:])
    if not figures:
        sys.exit("summary: no bench/face figures in " + ", ".join(sys.argv[1:]))
    rtt = figures.get("raw_curve.rtt")
    print("issue 11 in one run (medians; ratios are splitbrain's time over theirs, > 1: splitbrain slower)")
    print(f"  {'':<6}{'splitbrain':>11}{'RT':>6}" + "".join(f"{p:>11}" for p in PEERS)
          + f"{'local':>11}{'best peer':>20}{'raw CURVE':>13}")
    for key in WORKLOADS:
        sb = figures.get(f"splitbrain.{key}")
        if sb is None:
            continue
        nbytes = sb.get("bytes") or None
        best = None
        for p in PEERS:
            f = figures.get(f"{p}.{key}")
            if f and (best is None or f["median_s"] < figures[f"{best}.{key}"]["median_s"]):
                best = p
        best_text = f"{best} {sb['median_s'] / figures[f'{best}.{key}']['median_s']:.2f}×" if best else "—"
        raw = figures.get(RAW_FOR.get(key, "raw_curve.rtt"))
        rt = sb.get("round_trips")
        if raw is None or key in ("W8", "W8b", "W6run"):
            raw_text = "—"
        elif raw is not rtt:  # the same bytes through raw CURVE
            raw_text = f"{sb['median_s'] / time_of(raw, nbytes):.2f}×"
        else:  # per round trip: one of ours against one raw
            raw_text = f"{sb['median_s'] / (rt * rtt['median_s']):.2f}×/RT" if rt else "—"
        print(f"  {key:<6}{shown(sb):>11}{'' if rt is None else f'{rt:g}':>6}"
              + "".join(f"{shown(figures.get(f'{p}.{key}')):>11}" for p in PEERS)
              + f"{shown(figures.get(f'local.{key}')):>11}{best_text:>20}{raw_text:>13}")
    if rtt:
        print(f"  raw C++ ZeroMQ DEALER↔ROUTER round trip with CURVE: {shown(rtt)}")
    print("  (raw CURVE: splitbrain's time over the same bytes through raw C++ ZeroMQ with CURVE, or per round\n"
          "   trip over one raw round trip)")
    print("goals")
    missed = []

    def goal_line(label, value, goal):
        bound = float(goal.split()[1])
        ok = value <= bound if goal.startswith("≤") else value >= bound
        if not ok:
            missed.append(label)
        print(f"  {label:<44} {value:8.2f}   goal {goal:<6} {'met' if ok else 'MISSED'}")

    for key, against, goal in GOALS:
        sb = figures.get(f"splitbrain.{key}")
        other = figures.get(RAW_FOR.get(key, "raw_curve.rtt")) if against == "raw" else \
            figures.get(f"{against}.{key}")
        if sb is None or other is None:
            print(f"  {key} against {against}: not measured")
            continue
        if goal.startswith("≥"):  # throughput: theirs' time for the same bytes over ours
            value = time_of(other, sb.get("bytes")) / sb["median_s"]
            goal_line(f"{key} splitbrain / {against} (throughput)", value, goal)
        else:
            goal_line(f"{key} splitbrain / {against}", sb["median_s"] / other["median_s"], goal)
    for key in ("W8", "W8b"):
        sb = figures.get(f"splitbrain.{key}")
        if sb:
            goal_line(f"{key} connect to first call, ms", sb["median_s"] * 1e3, "≤ 5")
    sb = figures.get("splitbrain.W3")
    if sb and sb.get("round_trips") is not None:
        goal_line("W3 round trips", sb["round_trips"], "≤ 4")
    if kernel:
        first = kernel["figures"]["splitbrain"]["first"]["median"]
        ipy = kernel["figures"]["ipykernel"]["first"]["median"]
        print(f"  kernel first cell: splitbrain {first * 1e3:.0f} ms, ipykernel {ipy * 1e3:.0f} ms")
        goal_line("kernel cold start to first cell / ipykernel", kernel["ratios"]["first"], "≤ 0.8")
    else:
        print("  kernel first cell: not measured")
    worst = next((r for r in routing if r["name"] == "worst"), None)
    if worst:
        print(f"  outside any slave's context (bench/routing, load {worst['load']:.1f}):")
        for r in routing:
            if r.get("extra_ns") is not None:
                print(f"    {r['name']:<42} {r['without_ns']:8.1f} → {r['with_ns']:8.1f} ns ({r['extra_ns']:+.1f})")
        goal_line("routed attribute access outside, extra ns", worst["attribute_ns"], "≤ 100")
        goal_line("audit hook per event outside, extra ns", worst["audit_ns"], "≤ 100")
    else:
        print("  outside any slave's context (bench/routing): not measured")
    print("goals missed: " + (", ".join(missed) if missed else "none"))


if __name__ == "__main__":
    main()
