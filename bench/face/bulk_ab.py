"""W5 A/B across two build trees in one run (issue 11 point 5), and where each thread's time goes.

A read's reply is framed by the worker, so one client (this build's package) can read through agents
of two builds alternately, round by round, in the same conditions: `--other BUILD` (e.g. main's
build tree) against this one, and execnet in the same rounds. Printed: µs per MiB (medians), and
the ratio of the two builds' times paired round by round (robust to the load drifting). Then, for
this build's agent, 1 MiB reads and writes with the CPU time and the run-queue wait of every thread
of the client and the worker (/proc/PID/task/*/schedstat), per MiB. Not a test; no assertion on
timings. (A write is framed by the client: compare writes across builds with alternating runs of
bulk_phases.py or run.sh, one per build.)

    .venv/bin/python bench/face/bulk_ab.py --other /work/main/build [--mib 16] [--rounds 20]
"""
import argparse
import contextlib
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import benchpaths  # noqa: E402,F401  (sys.path and SPLITBRAIN_AGENT as run.sh sets them)

import benchkit  # noqa: E402
from bulk_phases import read_chunks as read_all, write_chunks as write_all  # noqa: E402

MiB = 1 << 20


def threads(pid):
    """{tid: (name, cpu ns, run-queue wait ns)} of process pid."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                cpu, wait = f.read().split()[:2]
            found[tid] = (name, int(cpu), int(wait))
        except (OSError, ValueError):
            pass
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", required=True, help="the other build tree (its agent/splitbrain-agent)")
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    agents = {"this": os.environ["SPLITBRAIN_AGENT"],
              "other": str(pathlib.Path(args.other) / "agent" / "splitbrain-agent")}
    splitbrain = benchkit.splitbrain_package()
    client_public, _ = splitbrain.client_keys()
    scratch = benchkit.scratch_dir()
    bulk = benchkit.bulk_file(scratch, args.mib * MiB)
    data = bulk.read_bytes()
    out = scratch / "bulk-out"
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)  # the tmpfs scratch: memory until removed
        os.environ["SPLITBRAIN_DIRECT"] = "1"
        boxes = {}
        for name, exe in agents.items():
            os.environ["SPLITBRAIN_AGENT"] = exe
            agent = stack.enter_context(benchkit.Agent(pathlib.Path(work) / name, authorized=(client_public,)))
            boxes[name] = splitbrain.connect(str(agent.connection_file), name=f"bulk-{name}")
            stack.callback(boxes[name].close)
            with boxes[name]:
                os.getcwd()
        os.environ["SPLITBRAIN_AGENT"] = agents["this"]
        import peers
        execnet = peers.ExecnetPeer()
        stack.callback(execnet.close)

        walls = {"this": [], "other": [], "execnet": []}
        for r in range(args.rounds):
            for name in (("this", "other") if r % 2 == 0 else ("other", "this")):
                start = time.perf_counter()
                with boxes[name]:
                    read_all(str(bulk), MiB)
                walls[name].append((time.perf_counter() - start) / args.mib)
            start = time.perf_counter()
            h = execnet.call("open", str(bulk), "rb")
            while execnet.call("read", h, MiB):
                pass
            execnet.call("close", h)
            walls["execnet"].append((time.perf_counter() - start) / args.mib)
        print(f"1 MiB reads, {args.mib} MiB x {args.rounds} rounds (load {os.getloadavg()[0]:.1f}), µs per MiB:")
        for name, values in walls.items():
            median = statistics.median(values)
            print(f"  {name:8} {median * 1e6:7.0f}  ({MiB / median / 1e6:4.0f} MB/s)")
        for a, b in (("this", "other"), ("this", "execnet"), ("other", "execnet")):
            paired = [x / y for x, y in zip(walls[a], walls[b])]
            print(f"  time {a} / {b}, paired by round: {statistics.median(paired):.3f} "
                  f"({sum(p < 1 for p in paired)} of {len(paired)} rounds below 1)")

        box = boxes["this"]
        for op in ("read", "write"):
            per_thread, op_walls = {}, []
            for _ in range(max(3, args.rounds // 4)):
                before = (threads(os.getpid()), threads(box.pid))
                start = time.perf_counter()
                with box:
                    if op == "read":
                        read_all(str(bulk), MiB)
                    else:
                        write_all(str(out), data, MiB)
                op_walls.append(time.perf_counter() - start)
                after = (threads(os.getpid()), threads(box.pid))
                for side, was, now in zip(("client", "worker"), before, after):
                    for tid, (name, cpu, wait) in now.items():
                        cpu0, wait0 = was.get(tid, (name, 0, 0))[1:]
                        per_thread.setdefault((side, name, tid), []).append((cpu - cpu0, wait - wait0))
            wall = statistics.median(op_walls) / args.mib
            print(f"1 MiB {op}s, this build: {wall * 1e6:.0f} µs per MiB; per thread, µs per MiB of CPU and "
                  "of run-queue wait:")
            for (side, name, tid), samples in sorted(per_thread.items()):
                cpu = statistics.median(s[0] for s in samples) / args.mib / 1e3
                wait = statistics.median(s[1] for s in samples) / args.mib / 1e3
                if cpu >= 5:
                    print(f"  {side:6} {name:18} cpu {cpu:6.0f}  run queue {wait:6.0f}")


if __name__ == "__main__":
    main()
