"""W8's time, phase by phase (issue 11 point 4): where a new connection's first call goes.

For each of N new connections (spaced --gap seconds apart, 0 = back to back as W8b), the client's
own clock around each step of `splitbrain.connect(target)` + `with b: os.getcwd()` + `b.close()`:

  connect   the Connection object: sockets, its IO thread (the CURVE handshake happens on first send)
  hello     the first request: CURVE handshake, the supervisor's hello (auth, key limits, leases, the
            spare worker handed over), the worker's hello, and the first import sent with it
  import    the first operation on the new worker: `import os` and its namespace (the import itself
            now comes with the hello's round trip: what is left is the namespace, built here)
  call      os.getcwd()
  bye       the session's end (its reply)
  close     the connection closed

then, on the same (now warm) session, the same import and call again (import2, call2): the
difference is what a fresh worker pays on its first operations (first touch of Python state).
Medians in ms, 10th–90th percentile. Not a test; no assertion on timings.

    bench/face/run.sh is not needed: .venv/bin/python bench/face/w8_phases.py [--n 20] [--gap 0.8]
      [--agent-arg=--no-zygote]
(PYTHONPATH and SPLITBRAIN_AGENT as run.sh sets them, from SPLITBRAIN_BUILD_DIR or build/.)
"""
import argparse
import os
import pathlib
import shutil
import statistics
import tempfile
import time

import benchpaths  # noqa: E402,F401  (sys.path and SPLITBRAIN_AGENT as run.sh sets them)

import benchkit  # noqa: E402

PHASES = ("connect", "hello", "import", "call", "bye", "close", "total", "import2", "call2")
FAULTS = ("import", "call", "import2", "call2")  # the worker's minor page faults (copy-on-write: first touches)


def cpu_ns(pid):
    """CPU time of all threads of process *pid* so far, in ns (/proc/PID/task/*/schedstat), or 0."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return 0
    return total


class Clocks:
    """Wall time, and the CPU time of this client, the supervisor and the worker, per phase."""

    def __init__(self, supervisor):
        self.supervisor = supervisor
        self.worker = None
        self.phases = {}
        self._mark()

    def _now(self):
        return (time.perf_counter_ns(), time.process_time_ns(), cpu_ns(self.supervisor),
                cpu_ns(self.worker) if self.worker else 0)

    def _mark(self):
        self._last = self._now()

    def phase(self, name):
        now = self._now()
        self.phases[name] = tuple((b - a) / 1e9 for a, b in zip(self._last, now))
        self._last = self._now()


def children(pid):
    found = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def minor_faults(pid):
    """The process's minor page faults so far (/proc/PID/stat field 10), or 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[7])
    except (OSError, ValueError, IndexError):
        return 0


def one(splitbrain, target, supervisor):
    from splitbrain import _slave
    clocks = Clocks(supervisor)
    orig = _slave.Slave._open_session
    real_connection = _slave._core.Connection

    # connect and hello, apart: the same steps as Slave._open_session, timed in between.
    def connection(*args):
        conn = real_connection(*args)
        clocks.phase("connect")
        return conn

    def timed_open(self):
        _slave._core.Connection = connection
        try:
            orig(self)
        finally:
            _slave._core.Connection = real_connection
        clocks.phase("hello")

    _slave.Slave._open_session = timed_open
    try:
        b = splitbrain.connect(target, name="w8-phases")
    finally:
        _slave.Slave._open_session = orig
    clocks.worker = b.pid
    set_up = cpu_ns(b.pid) / 1e9  # the worker's CPU from its fork (or exec) to its hello's reply
    clocks._mark()
    f0 = minor_faults(b.pid)
    module = b._module("os")
    clocks.phase("import")
    f1 = minor_faults(b.pid)
    module.getcwd()
    clocks.phase("call")
    faults = {"import": f1 - f0, "call": minor_faults(b.pid) - f1}
    b._conn.request("bye", None, 1.0)
    clocks.phase("bye")
    b._closed = True
    clocks.worker = None
    b._conn.close()
    clocks.phase("close")
    clocks.phases["total"] = tuple(map(sum, zip(*clocks.phases.values())))
    return clocks.phases, faults, set_up


def warm(splitbrain, target, supervisor):
    b = splitbrain.connect(target, name="w8-phases-warm")
    b._module("os").getcwd()
    clocks = Clocks(supervisor)
    clocks.worker = b.pid
    clocks._mark()
    f0 = minor_faults(b.pid)
    b._conn.request("import", {"name": "os"})
    clocks.phase("import2")
    f1 = minor_faults(b.pid)
    b._module("os").getcwd()
    clocks.phase("call2")
    faults = {"import2": f1 - f0, "call2": minor_faults(b.pid) - f1}
    b.close()
    return clocks.phases, faults


def median_ms(xs):
    return statistics.median(xs) * 1e3 if xs else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.8, help="seconds between connections (0: back to back)")
    parser.add_argument("--agent-arg", action="append", default=[])
    parser.add_argument("--log", help="copy the agent's log here")
    args = parser.parse_args()
    splitbrain = benchkit.splitbrain_package()
    client_public, _ = splitbrain.client_keys()
    with tempfile.TemporaryDirectory() as scratch, \
            benchkit.Agent(pathlib.Path(scratch) / "agent", authorized=(client_public,),
                           extra=tuple(args.agent_arg)) as agent:
        target = str(agent.connection_file)
        splitbrain.connect(target, name="w8-phases-first").close()  # the first spare is exec'd
        time.sleep(1.5)
        samples = {p: [] for p in PHASES}
        faults = {p: [] for p in FAULTS}
        set_ups = []
        spare_set_up, spare_faults = [], []
        supervisor = agent.agent.process.pid
        for _ in range(args.n):
            if args.gap:
                time.sleep(args.gap)
            spares = [c for c in children(supervisor) if comm(c) == "splitbrain-work"]
            spare_cpu = {c: (cpu_ns(c) / 1e9, minor_faults(c)) for c in spares}
            phases, f, set_up = one(splitbrain, target, supervisor)
            for c, (cpu, flt) in spare_cpu.items():
                spare_set_up.append(cpu)
                spare_faults.append(flt)
            set_ups.append(set_up)
            for k, v in phases.items():
                samples[k].append(v)
            for k, v in f.items():
                faults[k].append(v)
        time.sleep(max(args.gap, 0.8))
        for _ in range(min(args.n, 10)):
            phases, f = warm(splitbrain, target, supervisor)
            for k, v in phases.items():
                samples[k].append(v)
            for k, v in f.items():
                faults[k].append(v)
            time.sleep(max(args.gap, 0.8))
        if args.log:
            shutil.copy(pathlib.Path(scratch) / "agent" / "agent.log", args.log)
    extra = " " + " ".join(args.agent_arg) if args.agent_arg else ""
    print(f"W8 phases, {args.n} connections {args.gap} s apart{extra}, medians in ms "
          f"(load {os.getloadavg()[0]:.1f})")
    print(f"  {'phase':<8} {'wall':>7} {'wall p90':>8} {'client':>7} {'superv.':>7} {'worker':>7}  worker faults")
    for p in PHASES:
        rows = samples[p]
        if not rows:
            continue
        cols = list(zip(*rows))
        wall = sorted(cols[0])
        p90 = statistics.quantiles(wall, n=10)[-1] if len(wall) > 1 else wall[0]
        fs = f"{statistics.median(faults[p]):>6.0f}" if faults.get(p) else ""
        print(f"  {p:<8} {median_ms(cols[0]):7.2f} {p90 * 1e3:8.2f} {median_ms(cols[1]):7.2f} "
              f"{median_ms(cols[2]):7.2f} {median_ms(cols[3]):7.2f}  {fs}")
    print(f"  the worker's CPU from its start to its hello's reply: {median_ms(set_ups):.2f} ms; "
          f"a ready spare's, before its session: {median_ms(spare_set_up):.2f} ms "
          f"({statistics.median(spare_faults) if spare_faults else 0:.0f} page faults)")


if __name__ == "__main__":
    main()
