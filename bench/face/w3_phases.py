"""W3's time, step by step (issue 11 point 3): what an open, a write, a close and a read cost beyond a W1.

One session; a loop that interleaves a W1 (`os.getcwd()`) with a W3 (4 KiB of text written through
`open()` and read back), timing each step on the client's clocks: wall time, the client process's CPU
(all its threads: the caller, the channel's IO thread, libzmq's) and the worker's CPU (all its
threads, from /proc/PID/task/*/schedstat, which a loaded machine's waits do not inflate). The
schedstat files are opened once and re-read with pread, so a sample costs a few µs.

  w1       os.getcwd()
  open_w   open(p, "w")                  (a round trip: the open, and what pipelining needs)
  write    f.write(4 KiB)                (pipelined: sent, not waited for)
  close_w  the `with`'s exit             (a round trip: takes the write's reply)
  open_r   open(p)                       (a round trip; takes the previous pipelined close's reply)
  read     f.read()                      (a round trip)
  close_r  the `with`'s exit             (pipelined: sent, not waited for)

Medians in µs over --n loops. Not a test; no assertion on timings. Run it against two builds in
turn (SPLITBRAIN_BUILD_DIR=/work/main/build, then build/) to compare:

    .venv/bin/python bench/face/w3_phases.py [--n 2000] [--text ascii|utf8] [--binary]
"""
import argparse
import os
import pathlib
import statistics
import tempfile
import time

import benchpaths  # noqa: F401  (sys.path and SPLITBRAIN_AGENT as run.sh sets them)

import benchkit  # noqa: E402

STEPS = ("w1", "open_w", "write", "close_w", "open_r", "read", "close_r", "w3")


class ProcessClock:
    """CPU time of every thread of a process, by pread of its schedstat files (opened once)."""

    def __init__(self, pid):
        self.fds = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                self.fds.append(os.open(f"/proc/{pid}/task/{task}/schedstat", os.O_RDONLY))
            except OSError:
                pass

    def ns(self):
        total = 0
        for fd in self.fds:
            try:
                total += int(os.pread(fd, 64, 0).split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return total

    def close(self):
        for fd in self.fds:
            os.close(fd)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--text", choices=("ascii", "utf8"), default="ascii")
    parser.add_argument("--binary", action="store_true", help="'wb'/'rb' and bytes instead of text")
    args = parser.parse_args()
    text = "splitbrain\n" * 372 + "0123" if args.text == "ascii" else "splitbrän\n" * 409 + "012345"
    data = text.encode() if args.binary else text
    wmode, rmode = ("wb", "rb") if args.binary else ("w", "r")
    splitbrain = benchkit.splitbrain_package()
    client_public, _ = splitbrain.client_keys()
    with tempfile.TemporaryDirectory() as scratch, \
            benchkit.Agent(pathlib.Path(scratch) / "agent", authorized=(client_public,)) as agent:
        box = splitbrain.connect(str(agent.connection_file), name="w3-phases")
        path = str(pathlib.Path(scratch) / "small.txt")
        worker = ProcessClock(box.pid)
        samples = {s: [] for s in STEPS}
        last = [0, 0, 0]

        from splitbrain._context import current_slave

        # The clocks are read on this machine: the routed os would read the slave's descriptors.
        def mark():
            token = current_slave.set(None)
            w = worker.ns()
            c = time.process_time_ns()
            current_slave.reset(token)
            last[:] = [time.perf_counter_ns(), c, w]

        def step(name):
            t = time.perf_counter_ns()
            c = time.process_time_ns()
            token = current_slave.set(None)
            w = worker.ns()
            current_slave.reset(token)
            samples[name].append((t - last[0], c - last[1], w - last[2]))
            mark()

        with box:
            for _ in range(50):  # warm: the first calls learn the file type's methods
                os.getcwd()
                with open(path, wmode) as f:
                    f.write(data)
                with open(path, rmode) as f:
                    f.read()
            rt0 = box.round_trips
            for _ in range(args.n):
                mark()
                os.getcwd()
                step("w1")
                start = list(last)
                f = open(path, wmode)
                step("open_w")
                f.write(data)
                step("write")
                f.__exit__(None, None, None)
                step("close_w")
                f = open(path, rmode)
                step("open_r")
                got = f.read()
                step("read")
                f.__exit__(None, None, None)
                step("close_r")
                samples["w3"].append(tuple(b - a for a, b in zip(start, last)))
                del f
                assert got == data
            rts = (box.round_trips - rt0) / args.n
        worker.close()
        box.close()
    print(f"n={args.n} {args.text}{' binary' if args.binary else ''} round trips per loop (W1 + W3): {rts:g}; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'step':<8} {'wall':>8} {'client':>8} {'worker':>8}   (µs, medians)")
    medians = {}
    for name in STEPS:
        medians[name] = [statistics.median(c) / 1e3 for c in zip(*samples[name])]
        print(f"{name:<8} " + " ".join(f"{m:8.1f}" for m in medians[name]))
    w1, w3 = medians["w1"], medians["w3"]
    print(f"W3 / W1: wall {w3[0] / w1[0]:.2f}, CPU (client + worker) {(w3[1] + w3[2]) / (w1[1] + w1[2]):.2f}")


if __name__ == "__main__":
    main()
