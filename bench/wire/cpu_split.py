"""bench/wire (issue 11 point 2): the CPU of one W1 (`os.getcwd()` inside `with box:`) on each side,
build against build, in alternating rounds, so that two builds can be compared in one run.

Usage: python cpu_split.py [--calls 2000] [--rounds 3] [--builds build,/work/main/build] [--execnet]
                           [--perf DIR] [--smoke]
Each round starts, per build in turn, a fresh process with that build's Python package and agent
(SPLITBRAIN_BUILD_DIR), which runs --calls W1s and reports, per call: the wall-time median, and the
CPU time (/proc/PID/task/*/schedstat: time on a CPU, which a loaded machine's run-queue waits do not
inflate) of the client, the session's worker and the supervisor, thread by thread, with their
voluntary context switches (wake-ups). --execnet adds execnet's popen gateway doing the same
`os.getcwd()` as a peer (client and gateway CPU). --perf DIR also records `perf record --call-graph
dwarf` of the client and of the worker over one more loop per build (DIR/<build>-client.data,
-worker.data); `perf report -i ... --no-children --sort dso,sym` splits them."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def tasks(pid: int) -> dict[str, tuple[int, int]]:
    """comm/tid → (ns on a CPU, voluntary switches) for every thread of *pid*."""
    out = {}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
            status = (task / "status").read_text()
        except OSError:
            continue
        voluntary = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("voluntary_ctxt"))
        out[f"{comm}/{task.name}"] = (ns, voluntary)
    return out


def delta(before: dict, after: dict, calls: int) -> dict[str, list[float]]:
    """comm → [µs of CPU per call, wake-ups per call], threads of one name summed."""
    out: dict[str, list[float]] = {}
    for key, (ns, vol) in after.items():
        ns0, vol0 = before.get(key, (0, 0))
        name = key.split("/")[0]
        entry = out.setdefault(name, [0.0, 0.0])
        entry[0] += (ns - ns0) / 1e3 / calls
        entry[1] += (vol - vol0) / calls
    return {k: v for k, v in out.items() if v[0] >= 0.05 or v[1] >= 0.05}


def measure(fn, pids: dict[str, int], calls: int, context=None) -> dict:
    """*fn* run *calls* times inside *context* (entered once, as bench/face does; the /proc reads
    stay outside it, on this machine)."""
    context = context or contextlib.nullcontext()
    with context:
        for _ in range(min(200, calls)):
            fn()
    before = {label: tasks(pid) for label, pid in pids.items()}
    samples = []
    with context:
        for _ in range(calls):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    after = {label: tasks(pid) for label, pid in pids.items()}
    return {"wall_us": statistics.median(samples) * 1e6,
            "cpu": {label: delta(before[label], after[label], calls) for label in pids}}


def perf_record(pid: int, out: pathlib.Path) -> subprocess.Popen:
    return subprocess.Popen(["perf", "record", "-q", "-F", "4000", "--call-graph", "dwarf,16384", "-p", str(pid),
                             "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def child(args) -> None:
    build = pathlib.Path(os.environ["SPLITBRAIN_BUILD_DIR"])
    sys.path.insert(0, str(build / "python"))
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent / "face"))
    os.environ.setdefault("SPLITBRAIN_AGENT", str(build / "agent" / "splitbrain-agent"))
    import benchkit
    splitbrain = benchkit.splitbrain_package()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="splitbrain-cpu-split-"))
    result = {}
    try:
        client_public, _ = splitbrain.client_keys()
        with benchkit.Agent(scratch / "agent", authorized=(client_public,)) as agent:
            box = splitbrain.connect(str(agent.connection_file), name="bench-cpu-split")
            try:
                pids = {"client": os.getpid(), "worker": box.pid, "supervisor": agent.agent.process.pid}

                result["sb"] = measure(os.getcwd, pids, args.calls, box)
                result["direct"] = box._conn.direct
                if args.perf:
                    out = pathlib.Path(args.perf)
                    out.mkdir(parents=True, exist_ok=True)
                    tag = args.tag
                    recorders = [perf_record(os.getpid(), out / f"{tag}-client.data"),
                                 perf_record(box.pid, out / f"{tag}-worker.data")]
                    time.sleep(0.5)
                    deadline = time.monotonic() + args.perf_seconds
                    with box:
                        while time.monotonic() < deadline:
                            for _ in range(100):
                                os.getcwd()
                    for r in recorders:
                        r.send_signal(signal.SIGINT)
                    for r in recorders:
                        r.wait(60)
            finally:
                box.close()
        if args.execnet:
            import peers
            peer = peers.ExecnetPeer()
            try:
                gateway_pid = peer.gateway._rinfo().pid
                result["execnet"] = measure(lambda: peer.call("getcwd"), {"client": os.getpid(),
                                                                          "gateway": gateway_pid}, args.calls)
            finally:
                peer.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result))


def run_child(build: str, args, tag: str) -> dict:
    env = dict(os.environ, SPLITBRAIN_BUILD_DIR=build)
    cmd = [sys.executable, __file__, "--child", "--calls", str(args.calls), "--tag", tag]
    if args.execnet:
        cmd.append("--execnet")
    if args.perf:
        cmd += ["--perf", args.perf, "--perf-seconds", str(args.perf_seconds)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{build}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def total(cpu: dict) -> float:
    return sum(v[0] for v in cpu.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--builds", default=str(ROOT / "build"))
    parser.add_argument("--execnet", action="store_true")
    parser.add_argument("--perf")
    parser.add_argument("--perf-seconds", type=float, default=3.0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="b0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.rounds = 20, 1
    if args.child:
        return child(args)
    config = tempfile.mkdtemp(prefix="splitbrain-cpu-split-config-")
    os.environ.setdefault("SPLITBRAIN_CONFIG", config)
    builds = args.builds.split(",")
    runs: dict[str, list[dict]] = {b: [] for b in builds}
    try:
        for r in range(args.rounds):
            for i, build in enumerate(builds):
                runs[build].append(run_child(build, args, f"b{i}-r{r}"))
    finally:
        shutil.rmtree(config, ignore_errors=True)
    if args.smoke:
        print("SMOKE RUN: these figures measure nothing")
    print(f"W1 (os.getcwd() inside `with box:`), µs per call; {args.rounds} alternating rounds of {args.calls} calls")
    for build in builds:
        print(f"{build}:")
        for r, run in enumerate(runs[build]):
            sb = run["sb"]
            line = (f"  round {r}: wall {sb['wall_us']:6.1f}  client CPU {total(sb['cpu']['client']):6.1f}  "
                    f"worker CPU {total(sb['cpu']['worker']):6.1f}  supervisor CPU "
                    f"{total(sb['cpu']['supervisor']):5.1f}  (direct: {run['direct']})")
            if "execnet" in run:
                ex = run["execnet"]
                line += (f" | execnet wall {ex['wall_us']:6.1f}  client CPU {total(ex['cpu']['client']):6.1f}  "
                         f"gateway CPU {total(ex['cpu']['gateway']):6.1f}")
            print(line)
        last = runs[build][-1]["sb"]["cpu"]
        for side in ("client", "worker"):
            threads = ", ".join(f"{name} {v[0]:.1f} µs/{v[1]:.2f} wake-ups" for name, v in
                                sorted(last[side].items(), key=lambda kv: -kv[1][0]))
            print(f"    {side} threads (last round): {threads}")
        med = {k: statistics.median(f(run) for run in runs[build]) for k, f in {
            "wall": lambda run: run["sb"]["wall_us"],
            "client": lambda run: total(run["sb"]["cpu"]["client"]),
            "worker": lambda run: total(run["sb"]["cpu"]["worker"])}.items()}
        print(f"  median of rounds: wall {med['wall']:.1f}, client CPU {med['client']:.1f}, "
              f"worker CPU {med['worker']:.1f}")


if __name__ == "__main__":
    main()
