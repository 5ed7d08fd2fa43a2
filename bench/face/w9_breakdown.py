"""W9's cost beyond W1's, split by process (issue 11 point 2): a remote `FileNotFoundError` caught.

Two ways, in turn for --rounds rounds on one session (medians of the rounds, per call):

  W9 remote   the user's code: `with box: try: open(missing) except FileNotFoundError: pass`
  W1 remote   `with box: os.getcwd()`: one request that succeeds

For each, per call: the wall time; the CPU of the client (this process), the worker and the
supervisor, from their threads' /proc/PID/task/*/schedstat (time on a CPU, which a loaded machine's
run-queue waits do not inflate); the worker's and the client's sleeps (voluntary context switches:
each is a wake-up). Then W9 − W1 per process: what the error path itself costs.

--perf DIR records `perf record --call-graph dwarf` of the client and of the worker during one more
W9 loop (W1 with --perf-way W1) (DIR/client.data, DIR/worker.data; `perf report -i DIR/worker.data --no-children`).
Not a test; no assertion on timings.

    .venv/bin/python bench/face/w9_breakdown.py [--n 2000] [--rounds 5] [--perf DIR]
(SPLITBRAIN_BUILD_DIR=/work/main/build for another build tree's agent and package, as run.sh.)
"""
import argparse
import glob
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import benchpaths  # noqa: F401  (sys.path and SPLITBRAIN_AGENT as run.sh sets them)
os.environ.setdefault("SPLITBRAIN_DIRECT", "1")  # as run.sh: the direct client-worker connection

import benchkit  # noqa: E402
from w7_breakdown import switches  # noqa: E402


def schedstat(pid):
    """ns on a CPU, summed over the process's threads."""
    run = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            run += int(open(path).read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended
    return run


def sleeps(pid):
    """Voluntary context switches, summed over the process's threads."""
    return switches(pid)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="calls per way and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--perf", metavar="DIR", help="perf call graphs of the client and the worker over W9")
    parser.add_argument("--perf-way", choices=("W9", "W1"), default="W9", help="the way --perf records")
    args = parser.parse_args()
    splitbrain = benchkit.splitbrain_package()
    client_public, _ = splitbrain.client_keys()
    n = args.n
    with tempfile.TemporaryDirectory() as scratch, \
            benchkit.Agent(pathlib.Path(scratch) / "agent", authorized=(client_public,)) as agent:
        box = splitbrain.connect(str(agent.connection_file), name="w9-breakdown")
        missing = str(pathlib.Path(scratch) / "no-such-file")
        try:
            with box:
                worker = os.getpid()
            me, supervisor = os.getpid(), agent.agent.process.pid

            def w9():
                with box:
                    for _ in range(n):
                        try:
                            open(missing)
                        except FileNotFoundError:
                            pass

            def w1():
                with box:
                    for _ in range(n):
                        os.getcwd()

            ways = {"W9 remote": w9, "W1 remote": w1}
            for body in ways.values():
                body()  # warm
            rows = {way: [] for way in ways}
            for _ in range(args.rounds):
                for way, body in ways.items():
                    c0, w0, s0 = schedstat(me), schedstat(worker), schedstat(supervisor)
                    cs0, ws0 = sleeps(me), sleeps(worker)
                    t0 = time.perf_counter()
                    body()
                    wall = time.perf_counter() - t0
                    c1, w1_, s1 = schedstat(me), schedstat(worker), schedstat(supervisor)
                    cs1, ws1 = sleeps(me), sleeps(worker)
                    rows[way].append({"wall": wall * 1e6 / n, "client cpu": (c1 - c0) / 1e3 / n,
                                      "worker cpu": (w1_ - w0) / 1e3 / n, "supervisor cpu": (s1 - s0) / 1e3 / n,
                                      "client sleeps": (cs1 - cs0) / n, "worker sleeps": (ws1 - ws0) / n})
            fields = list(rows["W9 remote"][0])
            medians = {way: {f: statistics.median(r[f] for r in got) for f in fields} for way, got in rows.items()}
            print(f"per call, µs, medians of {args.rounds} rounds of {n} calls ({benchpaths.BUILD}); "
                  f"load {os.getloadavg()[0]:.1f}")
            print(f"{'':12s}" + "".join(f"{f:>16s}" for f in fields))
            for way, got in medians.items():
                print(f"{way:12s}" + "".join(f"{got[f]:16.{1 if 'sleeps' in f else 0}f}" for f in fields))
            print(f"{'W9 - W1':12s}" + "".join(
                f"{medians['W9 remote'][f] - medians['W1 remote'][f]:16.{1 if 'sleeps' in f else 0}f}" for f in fields))
            if args.perf:
                out = pathlib.Path(args.perf)
                out.mkdir(parents=True, exist_ok=True)
                recorders = [subprocess.Popen(["perf", "record", "-q", "-F", "1999", "--call-graph", "dwarf,16384",
                                               "-p", str(pid), "-o", str(out / f"{name}.data")],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                             for name, pid in (("client", me), ("worker", worker))]
                time.sleep(1.0)  # perf attaches
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline:
                    (w9 if args.perf_way == "W9" else w1)()
                for recorder in recorders:
                    recorder.send_signal(2)
                for recorder in recorders:
                    recorder.wait(timeout=60)
                print(f"perf data in {out}/client.data, {out}/worker.data")
        finally:
            box.close()


if __name__ == "__main__":
    sys.exit(main())
