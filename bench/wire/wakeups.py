"""bench/wire (issue 11 point 2): thread and process wake-ups per round trip, and where a round trip's
time goes — the figures that decide between a direct client↔worker connection and a worker main
thread that reads its socket itself.

Usage: python wakeups.py [--calls N] [--smoke]
Counts voluntary context switches (/proc/<pid>/task/<tid>/status) of every thread of
the client (this process), the agent's supervisor and the session's worker over N `os.getcwd()`
calls, and of the pyzmq CURVE RPC peer (bench/face/rpc_zmq_server.py) over N of its `getcwd`. A
thread that sleeps on a socket and is woken by a message counts one voluntary switch per wake-up
(involuntary switches, preemption by the machine's load, are left out).
Then the breakdown, from medians measured here, interleaved:
  ping        client → supervisor → client           (client + wire + supervisor)
  getcwd      client → worker's main thread → back   (the direct connection: client + wire + worker
              + the Python operation; no supervisor, no IO thread)
  op          os.getcwd() locally                    (the Python operation alone)
and raw C++ CURVE figures from splitbrain-bench-wire when it is built (the wire alone)."""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "face"))

import benchkit  # noqa: E402


def switches(pid: int) -> dict[str, int]:
    """Thread name (comm) and tid → voluntary context switches so far, for every thread of *pid*."""
    out = {}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines() if ":\t" in line)
        except OSError:
            continue  # the thread ended meanwhile
        out[f"{comm}/{task.name}"] = int(fields["voluntary_ctxt_switches"])
    return out


def per_call(before: dict, after: dict, calls: int) -> dict[str, float]:
    return {k: (after[k] - before.get(k, 0)) / calls for k in after if after[k] - before.get(k, 0) > 0}


def count(label_pids: dict[str, int], fn, calls: int) -> dict[str, dict[str, float]]:
    before = {label: switches(pid) for label, pid in label_pids.items()}
    for _ in range(calls):
        fn()
    after = {label: switches(pid) for label, pid in label_pids.items()}
    return {label: per_call(before[label], after[label], calls) for label in label_pids}


def median_of(fn, calls: int) -> float:
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def print_counts(title: str, counted: dict[str, dict[str, float]]):
    total = sum(sum(threads.values()) for threads in counted.values())
    print(f"{title}: {total:.2f} wake-ups per round trip")
    for label, threads in counted.items():
        shown = ", ".join(f"{name} {n:.2f}" for name, n in sorted(threads.items(), key=lambda kv: -kv[1]) if n >= 0.05)
        print(f"  {label:<11} {sum(threads.values()):5.2f}  ({shown or 'none'})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    calls = 20 if args.smoke else args.calls

    splitbrain = benchkit.splitbrain_package()
    import peers  # bench/face: the pyzmq CURVE RPC peer

    scratch = benchkit.scratch_dir()
    client_public, _ = splitbrain.client_keys()
    with benchkit.Agent(scratch / "agent", authorized=(client_public,)) as agent:
        os.environ["SPLITBRAIN_DIRECT"] = "1"  # direct from the hello (by default, after the 8th call)
        try:
            box = splitbrain.connect(str(agent.connection_file), name="bench-wakeups")
        finally:
            os.environ.pop("SPLITBRAIN_DIRECT")
        # The same agent through the relay only (A/B in one run): SPLITBRAIN_DIRECT=0 at its hello.
        os.environ["SPLITBRAIN_DIRECT"] = "0"
        try:
            relayed = splitbrain.connect(str(agent.connection_file), name="bench-wakeups-relay")
        finally:
            os.environ.pop("SPLITBRAIN_DIRECT")
        zmq_peer = peers.ZmqPeer()
        try:
            getcwd = box.modules.os.getcwd
            getcwd()
            relayed_getcwd = relayed.modules.os.getcwd
            relayed_getcwd()
            print(f"direct: {box._conn.direct}, relay: {relayed._conn.direct}")
            pids = {"client": os.getpid(), "supervisor": agent.agent.process.pid, "worker": box.pid}
            ours = count(pids, getcwd, calls)
            through_relay = count({"client": os.getpid(), "supervisor": agent.agent.process.pid,
                                   "worker": relayed.pid}, relayed_getcwd, calls)
            ping = count(pids, box.ping, calls)
            theirs = count({"client": os.getpid(), "server": zmq_peer.proc.pid}, lambda: zmq_peer.call("getcwd"),
                           calls)
            # Interleaved medians, a few rounds, so that the load hits all alike.
            t = {"getcwd": [], "relay": [], "ping": [], "op": [], "zmq": []}
            for _ in range(5):
                t["getcwd"].append(median_of(getcwd, calls // 5))
                t["relay"].append(median_of(relayed_getcwd, calls // 5))
                t["ping"].append(median_of(box.ping, calls // 5))
                t["op"].append(median_of(os.getcwd, calls // 5))
                t["zmq"].append(median_of(lambda: zmq_peer.call("getcwd"), calls // 5))
        finally:
            zmq_peer.close()
            relayed.close()
            box.close()
    med = {k: statistics.median(v) for k, v in t.items()}

    raw = {}
    try:
        import bench_wire
        if bench_wire.bench_exe().exists():
            raw = bench_wire.run_cpp(["--smoke"] if args.smoke else [])
    except Exception as e:  # the breakdown still prints without the raw figures
        print(f"raw figures not measured: {type(e).__name__}: {e}", file=sys.stderr)

    if args.smoke:
        print("SMOKE RUN: these figures measure nothing")
    print(f"bench/wire wake-ups: voluntary context switches per round trip over {calls} calls (threads named by comm/tid)")
    print_counts("splitbrain os.getcwd()", ours)
    print_counts("splitbrain os.getcwd() through the relay (SPLITBRAIN_DIRECT=0)", through_relay)
    print_counts("splitbrain ping (answered by the supervisor)", ping)
    print_counts("pyzmq DEALER→ROUTER CURVE getcwd", theirs)
    print("where a round trip's time goes (medians, µs)")
    rc, rcr = raw.get("raw_curve.rtt"), raw.get("raw_curve_relay.rtt")
    wire = rc.median if rc else float("nan")
    relay = rcr.median if rcr else float("nan")
    rows = [
        ("raw C++ CURVE round trip (the wire)", wire),
        ("raw C++ CURVE through a relay process", relay),
        ("pyzmq CURVE RPC getcwd (a peer)", med["zmq"]),
        ("splitbrain ping: client + wire + supervisor", med["ping"]),
        ("splitbrain os.getcwd(): client + wire + worker + op", med["getcwd"]),
        ("splitbrain os.getcwd() through the relay", med["relay"]),
        ("os.getcwd() locally (the Python operation)", med["op"]),
    ]
    for label, seconds in rows:
        print(f"  {label:<52} {seconds * 1e6:8.1f}")
    print("breakdown of splitbrain's os.getcwd() (µs; differences of the medians above)")
    parts = [
        ("wire (raw CURVE round trip)", wire),
        ("client + supervisor, for comparison: not on a call's path (ping − wire)", med["ping"] - wire),
        ("client + worker, the direct way (getcwd − wire − op)", med["getcwd"] - wire - med["op"]),
        ("Python operation", med["op"]),
    ]
    for label, seconds in parts:
        print(f"  {label:<74} {seconds * 1e6:8.1f}")
    scratch_cleanup(scratch)


def scratch_cleanup(scratch: pathlib.Path):
    import shutil
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
