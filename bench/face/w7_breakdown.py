"""W7's time, split by who spends it (issue 11): `subprocess.run(["true"])` on a slave.

Three ways, in turn for --rounds rounds on one session (medians of the rounds, per call):

  W7 remote   the user's code: `with box: subprocess.run(["true"])`, one request per call
  W1 remote   `with box: os.getcwd()`: one request, no process
  W7 loop     the same subprocess.run N times in one `box.run`: the operation alone, in the worker

For each, per call: the wall time; the worker's CPU and its run-queue wait (its threads'
/proc/PID/task/*/schedstat: time on a CPU, time runnable but waiting for one); the CPU of the
worker's children (the `true` processes: RUSAGE_CHILDREN, read on the slave); the client's CPU and
run-queue wait (this process, same counters); the context switches of the worker's and the client's
threads (/proc/PID/task/*/status: voluntary, a sleep and so a wake-up; involuntary, a preemption). Then a profile of the worker's Python for the
remote and the loop way (cProfile started and read back with `box.run`): where `fork_exec`
(vfork until the child's exec) and `waitpid` (until the child's exit) spend it.
Not a test; no assertion on timings.

    .venv/bin/python bench/face/w7_breakdown.py [--n 300] [--rounds 4] [--no-profile]
(PYTHONPATH and SPLITBRAIN_AGENT as run.sh sets them, from SPLITBRAIN_BUILD_DIR or build/.)
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

import benchpaths  # noqa: E402,F401  (sys.path and SPLITBRAIN_AGENT as run.sh sets them)
os.environ.setdefault("SPLITBRAIN_DIRECT", "1")  # as run.sh: the direct client-worker connection

import benchkit  # noqa: E402


# ---- run on the slave through box.run (their source travels; they keep to the standard library) ----

def run_true_times(n):
    import subprocess
    for _ in range(n):
        subprocess.run(["true"])


def children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def profile_start():
    import cProfile
    import sys
    profile = cProfile.Profile()
    sys.modules["__w7_breakdown_profile__"] = profile  # kept across requests; removed by profile_stop
    profile.enable()


def profile_stop(names):
    import pstats
    import sys
    profile = sys.modules.pop("__w7_breakdown_profile__")
    profile.disable()
    stats = pstats.Stats(profile).stats
    out = {}
    for (filename, _, name), (_, calls, tottime, cumtime, _) in stats.items():
        # subprocess.run, and the builtins as cProfile names them ("<built-in method posix.waitpid>")
        key = next((k for k in names if (name == k and filename.endswith("subprocess.py"))
                    or name.endswith("." + k + ">")), None)
        if key is not None:
            got = out.setdefault(key, [0, 0.0, 0.0])
            got[0] += calls
            got[1] += tottime
            got[2] += cumtime
    return out


# ---- here ----

def schedstat(pid):
    """(ns on a CPU, ns runnable waiting for one), summed over the process's threads."""
    run = wait = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            on_cpu, waited, _ = open(path).read().split()
        except (OSError, ValueError):
            continue  # a thread that ended
        run += int(on_cpu)
        wait += int(waited)
    return run, wait


def switches(pid):
    """(voluntary, involuntary) context switches, summed over the process's threads: a voluntary one
    is a sleep, so a wake-up follows it; an involuntary one, a preemption."""
    vol = invol = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            text = open(path).read()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol += int(line.split()[1])
    return vol, invol


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="calls per way and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    splitbrain = benchkit.splitbrain_package()
    client_public, _ = splitbrain.client_keys()
    n = args.n
    with tempfile.TemporaryDirectory() as scratch, \
            benchkit.Agent(pathlib.Path(scratch) / "agent", authorized=(client_public,)) as agent:
        box = splitbrain.connect(str(agent.connection_file), name="w7-breakdown")
        try:
            with box:
                worker = os.getpid()
                subprocess.run(["true"])  # warm: the worker's first subprocess imports and builds
            me = os.getpid()

            def remote_true():
                with box:
                    for _ in range(n):
                        subprocess.run(["true"])

            def remote_getcwd():
                with box:
                    for _ in range(n):
                        os.getcwd()

            def loop_true():
                box.run(run_true_times, n)

            ways = {"W7 remote": remote_true, "W1 remote": remote_getcwd, "W7 loop (box.run)": loop_true}
            rows = {way: [] for way in ways}
            for _ in range(args.rounds):
                for way, body in ways.items():
                    c0, w0, m0 = box.run(children_cpu), schedstat(worker), schedstat(me)
                    ws0, ms0 = switches(worker), switches(me)
                    t0 = time.perf_counter()
                    body()
                    wall = time.perf_counter() - t0
                    ws1, ms1 = switches(worker), switches(me)
                    w1, m1, c1 = schedstat(worker), schedstat(me), box.run(children_cpu)
                    rows[way].append({"wall": wall * 1e6 / n, "worker cpu": (w1[0] - w0[0]) / 1e3 / n,
                                      "worker rq wait": (w1[1] - w0[1]) / 1e3 / n,
                                      "children cpu": (c1 - c0) * 1e6 / n, "client cpu": (m1[0] - m0[0]) / 1e3 / n,
                                      "client rq wait": (m1[1] - m0[1]) / 1e3 / n,
                                      "worker sleeps": (ws1[0] - ws0[0]) / n, "worker preempted": (ws1[1] - ws0[1]) / n,
                                      "client sleeps": (ms1[0] - ms0[0]) / n, "client preempted": (ms1[1] - ms0[1]) / n})
            fields = list(rows["W7 remote"][0])
            print(f"per call, µs, medians of {args.rounds} rounds of {n} calls")
            print(f"{'':20s}" + "".join(f"{f:>17s}" for f in fields))
            for way, got in rows.items():
                print(f"{way:20s}" + "".join(f"{statistics.median(r[f] for r in got):17.{1 if 'sleeps' in f or 'preempted' in f else 0}f}"
                                             for f in fields))
            if not args.no_profile:
                names = ("fork_exec", "waitpid", "run")
                print("the worker's Python, cProfile (µs per call, cumulative)")
                for way, body in (("W7 remote", remote_true), ("W7 loop (box.run)", loop_true)):
                    box.run(profile_start)
                    body()
                    got = box.run(profile_stop, names)
                    parts = [f"{name} {got[name][2] * 1e6 / n:.0f}" for name in ("run", "fork_exec", "waitpid")
                             if name in got]
                    print(f"  {way:20s} " + ", ".join(parts))
        finally:
            box.close()


if __name__ == "__main__":
    main()
