"""bench/wire (issue 3 point 11): in one run, bare cppzmq, the splitbrain agent through the C++ client
channel, and RPyC classic — a small-call round trip and 64 MiB read()/write() through a remote file.

Usage: python bench_wire.py [--smoke] [--json] [--skip agent|rpyc] [--rpyc-stock]
SPLITBRAIN_BUILD_DIR names the build tree (splitbrain-bench-wire, splitbrain-agent).
Figures are medians with the 10th–90th percentile spread; MB/s are 10^6 bytes per second.
RPyC runs with TCP_NODELAY on both ends unless --rpyc-stock (see rpyc_server.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import shutil
import subprocess
import sys
import time

import benchkit
from benchkit import Figure, measure

MiB = 1 << 20
BULK = 64 * MiB


def bench_exe() -> pathlib.Path:
    return benchkit.build_dir() / "bench" / "wire" / "splitbrain-bench-wire"


def run_cpp(args: list[str]) -> dict[str, Figure]:
    out = subprocess.run([str(bench_exe()), *args], check=True, stdout=subprocess.PIPE, text=True,
                         timeout=300).stdout
    figures = {}
    for line in out.splitlines():
        if line.startswith("{"):
            f = Figure.from_json(json.loads(line))
            figures[f.name] = f
    return figures


def bench_rpyc(scratch: pathlib.Path, smoke: bool, stock: bool) -> dict[str, Figure]:
    nbytes = 4 * MiB if smoke else BULK
    src = benchkit.bulk_file(scratch, nbytes)
    dst = scratch / "rpyc-write"
    with benchkit.RpycServer(stock) as server:
        conn = server.connect()
        counter = benchkit.RpycRoundTrips(conn)
        rtt = measure("rpyc.rtt", lambda: conn.modules.os.getcwd(), reps=3000, budget_s=3, warmup=50,
                      smoke=smoke)
        rtt.round_trips = counter.per_call(lambda: conn.modules.os.getcwd())

        rf = conn.builtins.open(str(src), "rb")
        wf = conn.builtins.open(str(dst), "wb")
        # Random bytes: RPyC zlib-compresses large messages, and zeros would flatter it.
        data = src.read_bytes()
        # RPyC moves 64 MiB at a few MB/s: one repetition each (≈15 s) keeps the bench bounded.
        read = measure("rpyc.read_64MiB", rf.read, reps=1, budget_s=0, warmup=0, nbytes=nbytes,
                       setup=lambda: rf.seek(0), smoke=smoke)
        write = measure("rpyc.write_64MiB", lambda: wf.write(data), reps=1, budget_s=0, warmup=0,
                        nbytes=nbytes, setup=lambda: (wf.seek(0), wf.truncate()), smoke=smoke)
        rf.close()
        wf.close()
        conn.close()
    return {f.name: f for f in (rtt, read, write)}


def print_report(figs: dict[str, Figure], smoke: bool):
    def fig(name):
        return figs.get(name) or Figure(name, [], note="not run")

    if smoke:
        print("SMOKE RUN: each workload once or twice; these figures measure nothing")
    print("bench/wire — one run on this machine")
    rows = [
        ("raw zmq round trip (DEALER/ROUTER, 2 processes)", "raw.rtt"),
        ("raw zmq + CURVE round trip", "raw_curve.rtt"),
        ("raw zmq through a relay process (agent topology)", "raw_relay.rtt"),
        ("raw zmq + CURVE through a relay process", "raw_curve_relay.rtt"),
        ("agent os.getcwd() via C++ channel", "agent.rtt"),
        ("agent ping via C++ channel (supervisor only)", "agent.ping"),
        ("agent --insecure os.getcwd()", "agent_insecure.rtt"),
        ("agent --insecure ping", "agent_insecure.ping"),
        ("rpyc conn.modules.os.getcwd()", "rpyc.rtt"),
        ("raw zmq read 1 × 64 MiB message", "raw.read_1x64MiB"),
        ("raw zmq read 64 × 1 MiB frames", "raw.read_64x1MiB"),
        ("raw zmq write 1 × 64 MiB message", "raw.write_1x64MiB"),
        ("raw zmq write 64 × 1 MiB frames", "raw.write_64x1MiB"),
        ("raw zmq + CURVE read 1 × 64 MiB", "raw_curve.read_1x64MiB"),
        ("raw zmq + CURVE read 64 × 1 MiB", "raw_curve.read_64x1MiB"),
        ("raw zmq + CURVE write 1 × 64 MiB", "raw_curve.write_1x64MiB"),
        ("raw zmq + CURVE write 64 × 1 MiB", "raw_curve.write_64x1MiB"),
        ("raw zmq relay read 64 × 1 MiB", "raw_relay.read_64x1MiB"),
        ("raw zmq relay write 64 × 1 MiB", "raw_relay.write_64x1MiB"),
        ("raw zmq + CURVE relay read 64 × 1 MiB", "raw_curve_relay.read_64x1MiB"),
        ("raw zmq + CURVE relay write 64 × 1 MiB", "raw_curve_relay.write_64x1MiB"),
        ("agent remote file read() 64 MiB", "agent.read_64MiB"),
        ("agent remote file write() 64 MiB", "agent.write_64MiB"),
        ("agent --insecure remote file read() 64 MiB", "agent_insecure.read_64MiB"),
        ("agent --insecure remote file write() 64 MiB", "agent_insecure.write_64MiB"),
        ("rpyc remote file read() 64 MiB", "rpyc.read_64MiB"),
        ("rpyc remote file write() 64 MiB", "rpyc.write_64MiB"),
    ]
    for label, name in rows:
        print(f"  {label:<50} {fig(name).describe()}")

    print("ratios")

    def latency(a, b, goal=None):
        fa, fb = fig(a), fig(b)
        if not (fa.n and fb.n):
            print(f"  {a} / {b}: not measured")
            return
        r = fa.median / fb.median
        if goal is None:
            print(f"  {a + ' / ' + b:<56} {r:8.3g}")
        else:
            print(benchkit.ratio_line(f"{a} / {b}", r, f"≤ {goal}", r <= goal))

    def throughput(a, b, goal=None):
        fa, fb = fig(a), fig(b)
        if not (fa.n and fb.n):
            print(f"  {a} / {b}: not measured")
            return
        r = fb.median / fa.median  # throughput ratio = inverse time ratio (same bytes)
        if goal is None:
            print(f"  {a + ' / ' + b:<56} {r:8.3g}")
        else:
            print(benchkit.ratio_line(f"{a} / {b}", r, f"≥ {goal}", r >= goal))

    print(" goals (issue 3 point 11): the agent as deployed (CURVE) against bare zmq")
    latency("agent.rtt", "raw.rtt", 1.5)
    for op in ("read", "write"):
        throughput(f"agent.{op}_64MiB", f"raw.{op}_64x1MiB", 0.5)
        throughput(f"agent.{op}_64MiB", f"raw.{op}_1x64MiB", 0.5)
    print(" the same goals against bare zmq with the same encryption (CURVE)")
    latency("agent.rtt", "raw_curve.rtt", 1.5)
    for op in ("read", "write"):
        throughput(f"agent.{op}_64MiB", f"raw_curve.{op}_64x1MiB", 0.5)
    print(" where the time goes: encryption, the relay hop (client → supervisor → worker), the rest")
    latency("raw_curve.rtt", "raw.rtt")
    latency("raw_relay.rtt", "raw.rtt")
    latency("agent.ping", "raw_curve.rtt")
    latency("agent.rtt", "raw_curve_relay.rtt")
    latency("agent_insecure.rtt", "raw.rtt", 1.5)
    latency("agent_insecure.rtt", "raw_relay.rtt")
    for op in ("read", "write"):
        throughput(f"raw_curve.{op}_64x1MiB", f"raw.{op}_64x1MiB")
        throughput(f"raw_curve_relay.{op}_64x1MiB", f"raw.{op}_64x1MiB")
        throughput(f"agent.{op}_64MiB", f"raw_curve_relay.{op}_64x1MiB")
        throughput(f"agent_insecure.{op}_64MiB", f"raw.{op}_64x1MiB", 0.5)
        throughput(f"agent_insecure.{op}_64MiB", f"raw_relay.{op}_64x1MiB")
    print(" against RPyC classic")
    latency("rpyc.rtt", "raw.rtt")
    latency("agent.rtt", "rpyc.rtt")
    for op in ("read", "write"):
        throughput(f"rpyc.{op}_64MiB", f"raw.{op}_64x1MiB")
        throughput(f"agent.{op}_64MiB", f"rpyc.{op}_64MiB")


def bench_zmq(scratch: pathlib.Path, smoke: bool, with_agents: bool) -> dict[str, Figure]:
    """Raw zmq, raw zmq through a relay, and the agent (CURVE, as deployed, and --insecure, to see
    what encryption costs) in one interleaved run of splitbrain-bench-wire."""
    args = ["--smoke"] if smoke else []
    if not bench_exe().exists():
        print(f"raw zmq and agent: {bench_exe()} is not built (cmake --build <build> --target "
              f"splitbrain-bench-wire); skipped", file=sys.stderr)
        return {}
    with contextlib.ExitStack() as stack:
        if with_agents and not benchkit.agent_exe().exists():
            print(f"agent: {benchkit.agent_exe()} is not built; measuring raw zmq only", file=sys.stderr)
            with_agents = False
        if with_agents:
            src = benchkit.bulk_file(scratch, BULK)
            args += ["--read", str(src), "--write-dir", str(scratch)]
            for label, insecure in (("agent", False), ("agent_insecure", True)):
                agent = stack.enter_context(benchkit.Agent(scratch / label, insecure=insecure))
                args += ["--agent", label, agent.address, agent.public_key or "-",
                         str(agent.client_keys) if agent.public_key else "-"]
        return run_cpp(args)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="each workload once; checks the bench runs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON lines too")
    parser.add_argument("--skip", action="append", default=[], choices=["agent", "rpyc"])
    parser.add_argument("--rpyc-stock", action="store_true", help="RPyC exactly as shipped (Nagle on)")
    args = parser.parse_args()

    figs: dict[str, Figure] = {}
    scratch = benchkit.scratch_dir()
    t0 = time.monotonic()
    try:
        figs.update(bench_zmq(scratch, args.smoke, "agent" not in args.skip))
        if "rpyc" not in args.skip:
            figs.update(bench_rpyc(scratch, args.smoke, args.rpyc_stock))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_report(figs, args.smoke)
    print(f"(bench/wire ran {time.monotonic() - t0:.0f} s)")
    if args.json:
        benchkit.print_json_figures(list(figs.values()))


if __name__ == "__main__":
    main()
