"""bench/face (issue 4 point 11, issue 11 point 1): W1…W9 through `splitbrain` (inside `with box:`),
RPyC classic, execnet (a popen gateway, one channel), a pyzmq DEALER/ROUTER RPC with CURVE, and raw
C++ ZeroMQ with CURVE (splitbrain-bench-wire), in the same run, with each ratio against its goal
and against the best peer.

Usage: python bench_face.py [--smoke] [--json] [--skip rpyc|execnet|zmq|raw|splitbrain|local]
                            [--only W1,W9] [--rpyc-stock]
Needs the splitbrain package on PYTHONPATH and SPLITBRAIN_AGENT (run.sh sets both from
SPLITBRAIN_BUILD_DIR). Figures are medians with the 10th–90th percentile spread, N repetitions and
RT round trips per repetition where counted (splitbrain: Slave.round_trips; RPyC: requests it waits
for plus requests the server makes back); MB/s are 10^6 bytes per second. "local" runs the same
code with no slave: the floor of the operation itself."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import shutil
import sys
import time
import timeit

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "wire"))

import benchkit  # noqa: E402
import workloads  # noqa: E402
from benchkit import Figure, measure  # noqa: E402
from workloads import MiB  # noqa: E402


@dataclasses.dataclass
class Workload:
    key: str
    label: str
    goal: str  # "≤ x": splitbrain time / RPyC time; "≥ x×": splitbrain throughput / RPyC throughput
    reps: int = 2000
    budget_s: float = 2.0
    rpyc_reps: int | None = None
    issue_rpyc: float | None = None  # RPyC as measured when issue 4 was written: seconds, or MB/s for W4/W5

    def check(self, sb: Figure, rp: Figure) -> tuple[float, bool]:
        value = float(self.goal.split()[1].rstrip("×"))
        if self.goal.startswith("≥"):
            r = rp.median / sb.median
            return r, r >= value
        r = sb.median / rp.median
        return r, r <= value

    def check_issue(self, sb: Figure) -> tuple[float, bool] | None:
        """The same goal against the RPyC figure quoted in the issue (another day, another load)."""
        if self.issue_rpyc is None:
            return None
        value = float(self.goal.split()[1].rstrip("×"))
        if self.goal.startswith("≥"):
            r = sb.rate(sb.median) / self.issue_rpyc
            return r, r >= value
        r = sb.median / self.issue_rpyc
        return r, r <= value


WORKLOADS = [
    Workload("W1", "os.getcwd()", "≤ 0.5", issue_rpyc=0.53e-3),
    Workload("W2", 'os.path.join("a", "b")', "≤ 0.3", issue_rpyc=1.2e-3),
    Workload("W3", "write + read back 4 KiB with open()", "≤ 0.2", reps=500, issue_rpyc=5.4e-3),
    Workload("W4r", "read 64 MiB in one call", "≥ 100×", reps=10, budget_s=3, rpyc_reps=1, issue_rpyc=3),
    Workload("W4w", "write 64 MiB in one call", "≥ 100×", reps=10, budget_s=3, rpyc_reps=1),
    Workload("W5r", "read 64 MiB in 1 MiB chunks", "≥ 20×", reps=10, budget_s=3, rpyc_reps=2, issue_rpyc=19),
    Workload("W5w", "write 64 MiB in 1 MiB chunks", "≥ 20×", reps=10, budget_s=3, rpyc_reps=2),
    Workload("W6", "listdir + stat of 2,000 files", "≤ 0.25", reps=20, budget_s=4, rpyc_reps=3, issue_rpyc=3.6),
    Workload("W6run", "W6 through box.run (local: the same function)", "≤ 1.5", reps=20, budget_s=4),
    Workload("W7", 'subprocess.run(["true"])', "≤ 0.5", reps=300, issue_rpyc=2.8e-3),
    Workload("W8", "connect to first call", "≤ 2", reps=20, budget_s=6, issue_rpyc=4.7e-3),
    Workload("W8b", "W8, 20 connections back to back", "≤ 2", reps=20, budget_s=6),
    Workload("W9", "remote FileNotFoundError caught locally", "≤ 0.5", issue_rpyc=1.1e-3),
]


class Fixture:
    """Scratch files on tmpfs: the bulk file, 2,000 small files, and the data to write."""

    def __init__(self, smoke: bool, bulk_mib: int = 64):
        self.smoke = smoke
        self.bulk_bytes = (4 if smoke else bulk_mib) * MiB
        self.scratch = benchkit.scratch_dir()
        bulk = benchkit.bulk_file(self.scratch, self.bulk_bytes)
        files = self.scratch / "files"
        files.mkdir()
        for i in range(200 if smoke else 2000):
            (files / f"f{i:04d}.dat").write_bytes(b"x" * (i % 97))
        self.paths = workloads.Paths(str(self.scratch), bulk, files)
        self.data = bulk.read_bytes()

    def close(self):
        shutil.rmtree(self.scratch, ignore_errors=True)


@dataclasses.dataclass
class Side:
    """One way of running the workloads: callables by key, held inside `context` while timed."""

    name: str
    fns: dict
    context: object = contextlib.nullcontext
    round_trips: object = None  # fn → round trips of one call, or None
    setups: dict = dataclasses.field(default_factory=dict)


def measure_workload(w: Workload, side: Side, fx: Fixture, smoke: bool, quick: bool = False) -> Figure | None:
    fn = side.fns.get(w.key)
    if fn is None or (quick and side.name == "rpyc" and w.key.startswith(("W4", "W5", "W6"))):
        return None  # --quick: RPyC's bulk and W6 take a minute at 3 MB/s and 16,000 round trips
    nbytes = fx.bulk_bytes if w.key.startswith(("W4", "W5")) else 0
    slow = side.name == "rpyc" and w.rpyc_reps
    try:
        with side.context():
            fig = measure(f"{side.name}.{w.key}", fn, reps=w.rpyc_reps if slow else w.reps,
                          budget_s=w.budget_s, warmup=0 if slow else 1, nbytes=nbytes, smoke=smoke,
                          setup=side.setups.get(w.key))
    except Exception as e:  # a broken workload is reported, the others still run
        fig = Figure(f"{side.name}.{w.key}", [], nbytes, note=f"{type(e).__name__}: {e}"[:160])
    if side.round_trips and fig.n and not nbytes:
        try:
            with side.context():
                fig.round_trips = side.round_trips(fn)
        except Exception as e:
            fig.note = f"round trips not counted: {type(e).__name__}: {e}"[:160]
    print(f"  {side.name:<10} {w.key:<4} {fig.describe()}", file=sys.stderr, flush=True)
    return fig


def rpyc_side(stack: contextlib.ExitStack, fx: Fixture, stock: bool) -> Side:
    p = fx.paths
    server = stack.enter_context(benchkit.RpycServer(stock))
    conn = server.connect()
    stack.callback(conn.close)
    counter = benchkit.RpycRoundTrips(conn)
    u = workloads.RpycUser(conn)

    def w8():
        c = server.connect()
        c.modules.os.getcwd()
        c.close()

    fns = {
        "W1": lambda: u.w1(p), "W2": lambda: u.w2(p), "W3": lambda: u.w3(p),
        "W4r": lambda: u.w4_read(p), "W4w": lambda: u.w4_write(p, fx.data),
        "W5r": lambda: u.w5_read(p), "W5w": lambda: u.w5_write(p, fx.data),
        "W6": lambda: u.w6(p), "W7": lambda: u.w7(p), "W8": w8, "W8b": w8, "W9": lambda: u.w9(p),
    }
    return Side("rpyc", fns, round_trips=lambda fn: None if fn is w8 else counter.per_call(fn, 1))


def rpc_side(stack: contextlib.ExitStack, fx: Fixture, name: str, peer_class) -> Side | None:
    """An explicit-RPC peer (peers.py): the workloads as one remote function per step."""
    try:
        peer = peer_class()
    except Exception as e:  # a peer that cannot start is reported, the others still run
        print(f"{name}: cannot start ({type(e).__name__}: {e})", file=sys.stderr)
        return None
    stack.callback(peer.close)
    p = fx.paths
    u = workloads.RpcUser(peer.call)
    w8 = peer.connect_and_call  # one bound method, so that round_trips can tell it apart
    fns = {
        "W1": lambda: u.w1(p), "W2": lambda: u.w2(p), "W3": lambda: u.w3(p),
        "W4r": lambda: u.w4_read(p), "W4w": lambda: u.w4_write(p, fx.data),
        "W5r": lambda: u.w5_read(p), "W5w": lambda: u.w5_write(p, fx.data),
        "W6": lambda: u.w6(p), "W7": lambda: u.w7(p), "W8": w8, "W8b": w8, "W9": lambda: u.w9(p),
    }

    def round_trips(fn):
        if fn is w8:
            return None
        before = peer.requests
        fn()
        return peer.requests - before

    return Side(name, fns, round_trips=round_trips)


def raw_curve_figures(smoke: bool) -> dict[str, Figure]:
    """Raw C++ ZeroMQ DEALER → ROUTER with CURVE (bench/wire's splitbrain-bench-wire, no agent),
    run between the workloads so that it meets the same load."""
    import bench_wire
    if not bench_wire.bench_exe().exists():
        print(f"raw: {bench_wire.bench_exe()} not built; skipped", file=sys.stderr)
        return {}
    figs = bench_wire.run_cpp(["--smoke"] if smoke else [])
    raw = {}
    for key, name in (("rtt", "raw_curve.rtt"), ("read", "raw_curve.read_1x64MiB"),
                      ("write", "raw_curve.write_1x64MiB"), ("read_chunks", "raw_curve.read_64x1MiB"),
                      ("write_chunks", "raw_curve.write_64x1MiB")):
        if name in figs:
            raw[key] = figs[name]
            print(f"  raw_curve  {key:<12} {figs[name].describe()}", file=sys.stderr, flush=True)
    return raw


# Which raw C++ CURVE figure each workload compares with: a round trip, or the bulk transfer.
RAW_FOR = {"W4r": "read", "W4w": "write", "W5r": "read_chunks", "W5w": "write_chunks"}
PEERS = ("execnet", "zmq", "rpyc")


def plain_fns(fx: Fixture) -> dict:
    """The user's plain-Python code: on the slave inside `with box:`, on this machine outside."""
    p = fx.paths
    return {
        "W1": lambda: workloads.sb_w1(p), "W2": lambda: workloads.sb_w2(p), "W3": lambda: workloads.sb_w3(p),
        "W4r": lambda: workloads.sb_w4_read(p), "W4w": lambda: workloads.sb_w4_write(p, fx.data),
        "W5r": lambda: workloads.sb_w5_read(p), "W5w": lambda: workloads.sb_w5_write(p, fx.data),
        "W6": lambda: workloads.sb_w6(p), "W7": lambda: workloads.sb_w7(p), "W9": lambda: workloads.sb_w9(p),
        "W6run": lambda: workloads.w6_on_slave(p.files_dir),
    }


def splitbrain_side(stack: contextlib.ExitStack, fx: Fixture, agent_args=(), ab=False) -> list[Side]:
    """The user's code inside `with box:`, on an agent of our own reached by its connection file."""
    try:
        splitbrain = benchkit.splitbrain_package()
    except ImportError as e:
        print(f"splitbrain: cannot import ({e}); is PYTHONPATH the build's python dir?", file=sys.stderr)
        return []
    client_public, _ = splitbrain.client_keys()
    agent = stack.enter_context(benchkit.Agent(fx.scratch / "agent", authorized=(client_public,),
                                               extra=tuple(agent_args)))
    target = str(agent.connection_file)
    # The long session of W1…W9: direct from its hello, as any session is after its 8th call (a
    # session asks later by default: W8's new connections below do).
    default_direct = "SPLITBRAIN_DIRECT" not in os.environ
    if default_direct:
        os.environ["SPLITBRAIN_DIRECT"] = "1"
    try:
        box = splitbrain.connect(target, name="bench-face")
    finally:
        if default_direct:
            del os.environ["SPLITBRAIN_DIRECT"]
    stack.callback(box.close)
    w8_requests = []

    def w8():
        b = splitbrain.connect(target, name="bench-face-w8")
        with b:
            os.getcwd()
        w8_requests.append(b.round_trips)
        b.close()

    def w8_settle():
        # A new session takes the agent's pre-started worker; give it time to start the next one,
        # as a user's connect would find it (W8b: none, the connections come back to back).
        time.sleep(0.8)  # without its zygote, the agent starts the next spare 0.3 s after one is taken

    def round_trips(fn):
        if fn is w8:
            return w8_requests[-1] if w8_requests else None
        before = box.round_trips  # replies waited for: pipelined writes are sent, not waited for
        fn()
        return box.round_trips - before

    fns = plain_fns(fx)
    fns["W8"] = w8
    fns["W8b"] = w8
    fns["W6run"] = lambda: box.run(workloads.w6_on_slave, fx.paths.files_dir)
    side = Side("splitbrain", fns, context=lambda: box, round_trips=round_trips, setups={"W8": w8_settle})
    if not ab:
        return [side]
    # The A/B side: a second session whose open() skips the helper that sets files up for pipelined
    # writes, so its files are written one round trip per write, as before pipelining.
    sync = splitbrain.connect(target, name="bench-face-sync")
    stack.callback(sync.close)
    sync.__dict__["_sb_open_and_describe"] = False

    def sync_round_trips(fn):
        before = sync.round_trips
        fn()
        return sync.round_trips - before

    return [side, Side("sb-sync", plain_fns(fx), context=lambda: sync, round_trips=sync_round_trips)]


# The real modules, held where splitbrain's re-binding of module globals does not reach.
_REAL_MODULES = tuple((name, sys.modules[name]) for name in ("os", "subprocess"))


def routed_overhead(smoke: bool) -> list[str]:
    """Issue 4 point 4: outside any context a routed module costs ≤ 100 ns more per attribute
    access than the real module. Best of 5 runs of a million accesses each."""
    if "splitbrain" not in sys.modules:
        return []
    lines = ["routed module attribute access outside any context (issue 4 point 4, goal ≤ 100 ns extra)"]
    loops = 1000 if smoke else 1_000_000
    for name, real in _REAL_MODULES:
        routed = sys.modules[name]
        if routed is real:
            lines.append(f"  {name}: not routed in sys.modules")
            continue
        attr = "getcwd" if name == "os" else "run"
        t_real = min(timeit.repeat(f"m.{attr}", globals={"m": real}, number=loops, repeat=5)) / loops
        t_routed = min(timeit.repeat(f"m.{attr}", globals={"m": routed}, number=loops, repeat=5)) / loops
        extra = (t_routed - t_real) * 1e9
        lines.append(f"  {name}.{attr}: real {t_real * 1e9:6.1f} ns, routed {t_routed * 1e9:6.1f} ns, "
                     f"extra {extra:6.1f} ns   goal ≤ 100 ns {'met' if extra <= 100 else 'MISSED'}")
    return lines


def print_report(rp: dict[str, Figure], sb: dict[str, Figure], lo: dict[str, Figure], extra: list[str],
                 smoke: bool):
    if smoke:
        print("SMOKE RUN: each workload once on small data; these figures measure nothing")
    print("bench/face — one run on this machine (splitbrain inside `with box:` vs RPyC classic;")
    print("local: the same code with no slave, the floor of the operation itself)")
    for w in WORKLOADS:
        print(f"{w.key:<4} {w.label}")
        for side, figs in (("splitbrain", sb), ("rpyc", rp), ("local", lo)):
            f = figs.get(w.key) or Figure(w.key, [], note="not run")
            if side != "local" or f.n:
                print(f"       {side:<11} {f.describe()}")
    print("ratios (splitbrain time / RPyC time; for W4/W5 throughput splitbrain / RPyC)")
    missed = []
    for w in WORKLOADS:
        s, r = sb.get(w.key), rp.get(w.key)
        if not (s and r and s.n and r.n):
            print(f"  {w.key:<4} {w.label:<40} not measured")
            continue
        value, ok = w.check(s, r)
        print(benchkit.ratio_line(f"{w.key:<4} {w.label}", value, w.goal, ok))
        if not ok:
            missed.append(w.key)
    print("the same goals against the RPyC figures quoted in issue 4 (measured another time; context only)")
    for w in [] if smoke else WORKLOADS:
        s = sb.get(w.key)
        got = w.check_issue(s) if (s and s.n) else None
        if got:
            print(benchkit.ratio_line(f"{w.key:<4} {w.label}", got[0], w.goal, got[1]))
    for line in extra:
        print(line)
    if missed:
        print("goals missed: " + ", ".join(missed))


# Issue 11's goals: (workload, against, bound); "≤": splitbrain time / theirs, "≥": throughput ratio.
ISSUE11_GOALS = [
    ("W1", "raw", "≤ 1.5"), ("W1", "execnet", "≤ 1.2"), ("W9", "execnet", "≤ 1.2"), ("W3", "execnet", "≤ 2"),
    ("W6run", "local", "≤ 1.5"), ("W4r", "raw", "≥ 0.6"), ("W4w", "raw", "≥ 0.6"), ("W5r", "execnet", "≥ 1"), ("W5w", "execnet", "≥ 1"),
]


def speed_ratio(sb: Figure, other: Figure) -> float:
    """How many times slower splitbrain is: time / time, or for throughput figures theirs / ours."""
    return sb.median / other.median


def print_peer_report(results: dict[str, dict[str, Figure]], raw: dict[str, Figure], smoke: bool):
    """Issue 11 point 1: every workload against the best peer of this run and against raw C++ ZeroMQ
    with CURVE (a round trip, or the same bulk transfer), as time ratios (> 1: splitbrain slower)."""
    sb = results["splitbrain"]
    print("bench/face against the explicit-RPC peers (issue 11; time ratios, > 1 means splitbrain is slower)")
    print(f"  {'':<4} {'splitbrain':>12} " + " ".join(f"{p:>12}" for p in PEERS)
          + f" {'best peer':>18} {'raw CURVE':>20}")
    for w in WORKLOADS:
        s = sb.get(w.key)
        if not (s and s.n):
            print(f"  {w.key:<4} splitbrain not measured")
            continue
        cells, best = [], None
        for p in PEERS:
            f = results[p].get(w.key)
            if f and f.n:
                cells.append(f"{speed_ratio(s, f):11.2f}×")
                if best is None or f.median < results[best][w.key].median:
                    best = p
            else:
                cells.append(f"{'—':>12}")
        best_text = f"{best} {speed_ratio(s, results[best][w.key]):.2f}×" if best else "—"
        r = raw.get(RAW_FOR.get(w.key, "rtt"))
        if r and r.n and w.key not in ("W8", "W8b"):
            rs = r.median * (s.nbytes / r.nbytes if r.nbytes and s.nbytes else 1)
            raw_text = f"{s.median / rs:.2f}× {'rtt' if not r.nbytes else 'bulk'}"
        else:
            raw_text = "—"
        shown = f"{s.rate(s.median):7.1f} MB/s" if s.nbytes else benchkit.fmt_time(s.median)
        print(f"  {w.key:<4} {shown:>12} " + " ".join(cells) + f" {best_text:>18} {raw_text:>20}")
    print("  (cells: splitbrain time / that peer's time; raw CURVE: / one raw round trip, or / the same bytes)")
    print("issue 11 goals in this run")
    for key, against, goal in ISSUE11_GOALS:
        s = sb.get(key)
        o = raw.get(RAW_FOR.get(key, "rtt")) if against == "raw" else results[against].get(key)
        if not (s and s.n and o and o.n):
            print(f"  {key:<4} against {against}: not measured")
            continue
        if goal.startswith("≥"):
            value = s.rate(s.median) / (o.rate(o.median) if o.nbytes else s.rate(o.median))
            ok = value >= float(goal.split()[1])
        else:
            value = s.median / o.median
            ok = value <= float(goal.split()[1])
        print(benchkit.ratio_line(f"{key:<4} splitbrain / {against}" + (" (throughput)" if goal[0] == "≥" else ""),
                                  value, goal, ok))
    for key, label in (("W8", "connect to first call"), ("W8b", "the same, 20 back to back")):
        w8 = sb.get(key)
        if w8 and w8.n:
            print(benchkit.ratio_line(f"{key:<4} {label}, ms", w8.median * 1e3, "≤ 5", w8.median <= 5e-3))
    if smoke:
        print("  (smoke run: these ratios measure nothing)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="each workload once, 4 MiB instead of 64 MiB; checks the bench runs")
    parser.add_argument("--quick", action="store_true",
                        help="a fifth of the repetitions and time per workload, 16 MiB bulk, no RPyC bulk or W6")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON lines too")
    parser.add_argument("--ab-pipelining", action="store_true",
                        help="also run splitbrain with pipelined writes off (side sb-sync), for an A/B")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["rpyc", "execnet", "zmq", "raw", "splitbrain", "local"])
    parser.add_argument("--only", help="comma-separated workloads to run, e.g. W1,W4r,W9")
    parser.add_argument("--agent-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for splitbrain-agent serve, e.g. --agent-arg=--no-zygote")
    parser.add_argument("--rpyc-stock", action="store_true",
                        help="RPyC exactly as shipped (Nagle on): os.stat() then stalls 40 ms per call")
    args = parser.parse_args()
    if args.only:
        keep = {k.strip() for k in args.only.split(",")}
        unknown = keep - {w.key for w in WORKLOADS}
        if unknown:
            parser.error(f"unknown workloads {sorted(unknown)}; known: {[w.key for w in WORKLOADS]}")
        WORKLOADS[:] = [w for w in WORKLOADS if w.key in keep]

    if args.quick:
        for w in WORKLOADS:
            w.reps, w.budget_s = max(5, w.reps // 5), w.budget_s / 4
    t0 = time.monotonic()
    fx = Fixture(args.smoke, 16 if args.quick else 64)
    results: dict[str, dict[str, Figure]] = {"splitbrain": {}, "rpyc": {}, "execnet": {}, "zmq": {}, "local": {},
                                             "sb-sync": {}}
    raw: dict[str, Figure] = {}
    try:
        with contextlib.ExitStack() as stack:
            sides = []
            if "splitbrain" not in args.skip:
                sides.extend(splitbrain_side(stack, fx, args.agent_arg, ab=args.ab_pipelining))
            if "rpyc" not in args.skip:
                sides.append(rpyc_side(stack, fx, args.rpyc_stock))
            import peers
            for name, peer_class in (("execnet", peers.ExecnetPeer), ("zmq", peers.ZmqPeer)):
                if name not in args.skip:
                    side = rpc_side(stack, fx, name, peer_class)
                    if side:
                        sides.append(side)
            if "local" not in args.skip:
                sides.append(Side("local", plain_fns(fx)))
            # Workload by workload, every side back to back: the machine's load drifts slowly. Raw
            # C++ ZeroMQ runs halfway, between the latency and the bulk workloads.
            for w in WORKLOADS:
                if w.key == "W4r" and "raw" not in args.skip:
                    raw = raw_curve_figures(args.smoke)
                for side in sides:
                    fig = measure_workload(w, side, fx, args.smoke, args.quick)
                    if fig:
                        results[side.name][w.key] = fig
            if not raw and "raw" not in args.skip:
                raw = raw_curve_figures(args.smoke)
            extra = routed_overhead(args.smoke)
    finally:
        fx.close()
    sb, rp, lo = results["splitbrain"], results["rpyc"], results["local"]
    print_report(rp, sb, lo, extra, args.smoke)
    print_peer_report(results, raw, args.smoke)
    if results["sb-sync"]:
        print("A/B: splitbrain with pipelined writes (splitbrain) and without (sb-sync), same run")
        for key, fig in results["sb-sync"].items():
            on = results["splitbrain"].get(key)
            if on and on.n and fig.n:
                print(f"  {key:<5} pipelined {on.describe()}\n        without   {fig.describe()}")
    print(f"(bench/face ran {time.monotonic() - t0:.0f} s)")
    if args.json:
        benchkit.print_json_figures([f for side in PEERS + ("splitbrain", "local") for f in results[side].values()]
                                    + list(raw.values()))


if __name__ == "__main__":
    main()
