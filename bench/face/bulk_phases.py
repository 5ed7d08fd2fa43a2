"""W5's cost, split (issue 11 point 5): chunked `read(n)` / `write(chunk)` on a remote file, per call,
as a fixed cost and a per-byte cost, in wall time and in CPU of the client, the supervisor and the
worker, the direct way and through the relay.

For each chunk size (64 KiB … 4 MiB) and each way, the same --mib MiB are read in `f.read(size)`
calls and written in `f.write(chunk)` calls inside `with box:`, the ways and sizes interleaved
round by round (--rounds); then a least-squares line through the per-call medians of the chunks up
to 1 MiB gives the fixed cost (µs per call) and the per-byte cost (µs per MiB) of each column. CPU is /proc/PID/task/*/
schedstat (so a loaded machine's waits do not count). The ways: `direct` (SPLITBRAIN_DIRECT=1),
`relay` (through the supervisor), `plain` (an --insecure agent: the relay without CurveZMQ, what
the cipher costs), `execnet` (bench/face's execnet peer, its gateway's CPU in the worker column).
For scale, the same machine's memcpy and ciphers of 1 MiB in CPU time: CurveZMQ's
(crypto_box_afternm, XSalsa20-Poly1305), and libsodium's AES-256-GCM and ChaCha20-Poly1305. Not a
test; no assertion on timings.

    .venv/bin/python bench/face/bulk_phases.py [--mib 32] [--rounds 5] [--sizes 64,256,1024,4096]
        [--ways direct,relay,plain,execnet] [--perf OUT]
(PYTHONPATH and SPLITBRAIN_AGENT as run.sh sets them, from SPLITBRAIN_BUILD_DIR or build/.)
"""
import argparse
import contextlib
import ctypes
import ctypes.util
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import benchpaths  # noqa: E402,F401  (sys.path and SPLITBRAIN_AGENT as run.sh sets them)

import benchkit  # noqa: E402
from w8_phases import cpu_ns  # noqa: E402

MiB = 1 << 20
COLUMNS = ("wall", "client", "superv.", "worker")


def clocks(supervisor, worker):
    return (time.perf_counter_ns(), time.process_time_ns(), cpu_ns(supervisor), cpu_ns(worker))


def read_chunks(path, size):
    with open(path, "rb") as f:
        while f.read(size):
            pass


def write_chunks(path, data, size):
    with open(path, "wb") as f:
        for i in range(0, len(data), size):
            f.write(data[i:i + size])


def one(box, supervisor, fn, *args):
    before = clocks(supervisor, box.pid)  # supervisor 0 (execnet): cpu_ns(0) is 0
    with box:
        fn(*args)
    after = clocks(supervisor, box.pid)
    return [(b - a) / 1e9 for a, b in zip(before, after)]


def fit(sizes, values):
    """Least squares value = fixed + per_byte * size."""
    n = len(sizes)
    mx, my = sum(sizes) / n, sum(values) / n
    sxx = sum((x - mx) ** 2 for x in sizes)
    slope = sum((x - mx) * (y - my) for x, y in zip(sizes, values)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def local_floor():
    """CPU µs per MiB of memcpy and of libsodium's ciphers on this machine, now (the best of 3)."""
    sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
    sodium.sodium_init()
    src = ctypes.create_string_buffer(os.urandom(MiB + 32), MiB + 32)
    out = ctypes.create_string_buffer(MiB + 64)
    nonce, key, length = ctypes.create_string_buffer(24), ctypes.create_string_buffer(32), ctypes.c_ulonglong()
    size = ctypes.c_ulonglong(MiB)

    def cpu_us(fn, reps=20):
        best = []
        for _ in range(3):
            start = time.process_time()
            for _ in range(reps):
                fn()
            best.append((time.process_time() - start) / reps)
        return min(best) * 1e6

    floor = {"memcpy": cpu_us(lambda: ctypes.memmove(out, src, MiB), 100),
             "CurveZMQ's XSalsa20-Poly1305": cpu_us(lambda: sodium.crypto_box_afternm(
                 out, src, ctypes.c_ulonglong(MiB + 32), nonce, key)),
             "ChaCha20-Poly1305": cpu_us(lambda: sodium.crypto_aead_chacha20poly1305_ietf_encrypt(
                 out, ctypes.byref(length), src, size, None, ctypes.c_ulonglong(0), None, nonce, key))}
    if sodium.crypto_aead_aes256gcm_is_available():
        floor["AES-256-GCM"] = cpu_us(lambda: sodium.crypto_aead_aes256gcm_encrypt(
            out, ctypes.byref(length), src, size, None, ctypes.c_ulonglong(0), None, nonce, key))
    return floor


class Execnet:
    """bench/face's execnet peer as a box: one(…) times it the same way (its gateway is the worker)."""

    def __init__(self):
        import peers
        self.peer = peers.ExecnetPeer()
        self.pid = self.peer.gateway.remote_exec("import os; channel.send(os.getpid())").receive(30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, path, size):
        h = self.peer.call("open", path, "rb")
        while self.peer.call("read", h, size):
            pass
        self.peer.call("close", h)

    def write(self, path, data, size):
        h = self.peer.call("open", path, "wb")
        for i in range(0, len(data), size):
            self.peer.call("write", h, data[i:i + size])
        self.peer.call("close", h)

    def close(self):
        self.peer.close()


def record(path, box, supervisor, op, bulk, out, data):
    """perf record (call graphs) of this process, the supervisor and the worker over 1 MiB reads or writes."""
    pids = f"{os.getpid()},{supervisor},{box.pid}"
    perf = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-g", "-o", path, "-p", pids],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    until = time.monotonic() + 4
    while time.monotonic() < until:
        if op == "read":
            one(box, supervisor, read_chunks, bulk, MiB)
        else:
            one(box, supervisor, write_chunks, out, data, MiB)
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=60)
    print(f"  perf: {path} (perf report -i {path} --no-children --sort comm,dso,sym)", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="64,256,1024,4096", help="chunk sizes in KiB")
    parser.add_argument("--ways", default="direct,relay,plain,execnet")
    parser.add_argument("--agent-arg", action="append", default=[])
    parser.add_argument("--perf", metavar="OUT", help="then record `perf` of the three processes over more 1 MiB "
                        "reads and writes, each way but execnet (OUT-WAY-read.data, OUT-WAY-write.data)")
    args = parser.parse_args()
    sizes = [int(s) * 1024 for s in args.sizes.split(",")]
    ways = args.ways.split(",")
    splitbrain = benchkit.splitbrain_package()
    client_public, _ = splitbrain.client_keys()
    scratch = benchkit.scratch_dir()
    bulk = benchkit.bulk_file(scratch, args.mib * MiB)
    data = bulk.read_bytes()
    out = scratch / "bulk-out"
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)  # the tmpfs scratch: memory until removed
        agent = stack.enter_context(benchkit.Agent(pathlib.Path(work) / "agent", authorized=(client_public,),
                                                   extra=tuple(args.agent_arg)))
        boxes, supervisors = {}, {}
        for way in ways:
            if way == "execnet":
                boxes[way] = Execnet()
                stack.callback(boxes[way].close)
                supervisors[way] = 0
                continue
            target = agent
            if way == "plain":
                target = stack.enter_context(benchkit.Agent(pathlib.Path(work) / "plain", insecure=True,
                                                            extra=tuple(args.agent_arg)))
            os.environ["SPLITBRAIN_DIRECT"] = "1" if way == "direct" else "0"
            boxes[way] = splitbrain.connect(str(target.connection_file), name=f"bulk-{way}")
            stack.callback(boxes[way].close)
            supervisors[way] = target.agent.process.pid
            with boxes[way]:
                os.getcwd()
        samples = {(way, op, size): [] for way in ways for op in ("read", "write") for size in sizes}
        for _ in range(args.rounds):
            for size in sizes:
                for way in ways:
                    box, sup = boxes[way], supervisors[way]
                    reader = box.read if way == "execnet" else read_chunks
                    writer = box.write if way == "execnet" else write_chunks
                    samples[(way, "read", size)].append(one(box, sup, reader, str(bulk), size))
                    samples[(way, "write", size)].append(one(box, sup, writer, str(out), data, size))
        if args.perf:
            for way in ways:
                if way == "execnet":
                    continue
                for op in ("read", "write"):
                    record(args.perf + f"-{way}-{op}.data", boxes[way], supervisors[way], op, str(bulk), str(out),
                           data)
    floor = local_floor()
    total = args.mib * MiB
    print(f"bulk phases: {args.mib} MiB per run, {args.rounds} rounds, medians (load {os.getloadavg()[0]:.1f}); "
          f"per call in µs (wall, and CPU of each process), MB/s from the wall time")
    for op in ("read", "write"):
        for way in ways:
            print(f"  {op} {way}")
            print(f"    {'chunk':>8} " + " ".join(f"{c:>8}" for c in COLUMNS) + f" {'MB/s':>8}")
            per_call = {c: [] for c in COLUMNS}
            for size in sizes:
                rows = samples[(way, op, size)]
                calls = -(-total // size)
                med = [statistics.median(col) / calls for col in zip(*rows)]
                for c, v in zip(COLUMNS, med):
                    per_call[c].append(v)
                print(f"    {size // 1024:>6}Ki " + " ".join(f"{v * 1e6:8.0f}" for v in med)
                      + f" {size / med[0] / 1e6:8.0f}")
            # The line through the chunks up to 1 MiB: larger ones leave the caches (a 4 MiB chunk costs
            # more per byte, execnet's as well).
            small = [i for i, size in enumerate(sizes) if size <= MiB]
            if len(small) > 1:
                fits = [fit([sizes[i] for i in small], [per_call[c][i] for i in small]) for c in COLUMNS]
                print(f"    {'fixed':>8} " + " ".join(f"{a * 1e6:8.0f}" for a, _ in fits) + "   µs per call")
                print(f"    {'per MiB':>8} " + " ".join(f"{b * MiB * 1e6:8.0f}" for _, b in fits) + "   µs per MiB")
    print("  this machine now, CPU µs per MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in floor.items()))


if __name__ == "__main__":
    main()
