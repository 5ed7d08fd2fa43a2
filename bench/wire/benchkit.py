"""Shared by bench/wire and bench/face: timing with a bounded budget, an RPyC classic server on a free
loopback port, a loopback splitbrain-agent with fresh keys (splitbrain's own launcher), and the
figure table."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(sys.executable).parent


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("SPLITBRAIN_BUILD_DIR", ROOT / "build"))


def agent_exe() -> pathlib.Path:
    return pathlib.Path(os.environ.get("SPLITBRAIN_AGENT", build_dir() / "agent" / "splitbrain-agent"))


@dataclasses.dataclass
class Figure:
    """Seconds per repetition of one workload; `nbytes` makes it a throughput figure."""

    name: str
    seconds: list[float]
    nbytes: int = 0
    round_trips: float | None = None
    note: str = ""
    summary: tuple[float, float, float, int] | None = None  # (p10, median, p90, n) measured elsewhere

    @property
    def n(self) -> int:
        return self.summary[3] if self.summary else len(self.seconds)

    def quantile(self, q: float) -> float:
        if self.summary and q in (0.1, 0.5, 0.9):
            return self.summary[{0.1: 0, 0.5: 1, 0.9: 2}[q]]
        s = sorted(self.seconds)
        if not s:
            return float("nan")
        pos = q * (len(s) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    @property
    def median(self) -> float:
        if self.summary:
            return self.summary[1]
        return statistics.median(self.seconds) if self.seconds else float("nan")

    def rate(self, seconds: float) -> float:
        return self.nbytes / seconds / 1e6

    def describe(self) -> str:
        """Median with the 10th–90th percentile spread, as time or as MB/s (10^6 bytes)."""
        if not self.n:
            return "not measured" + (f" ({self.note})" if self.note else "")
        lo, hi = self.quantile(0.1), self.quantile(0.9)
        if self.nbytes:
            text = f"{self.rate(self.median):8.1f} MB/s [{self.rate(hi):.1f}–{self.rate(lo):.1f}]"
        else:
            text = f"{fmt_time(self.median)} [{fmt_time(lo).strip()}–{fmt_time(hi).strip()}]"
        text += f" N={self.n}"
        if self.round_trips is not None:
            text += f" RT={self.round_trips:g}"
        if self.note:
            text += f" ({self.note})"
        return text

    @classmethod
    def from_json(cls, line: dict) -> "Figure":
        return cls(line["name"], [], line.get("bytes", 0),
                   summary=(line["p10_s"], line["median_s"], line["p90_s"], line["n"]))


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:7.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:7.2f} ms"
    return f"{seconds:7.2f} s "


def measure(name: str, fn, *, reps: int, budget_s: float, warmup: int = 1, nbytes: int = 0,
            setup=None, smoke: bool = False) -> Figure:
    """Times `fn()` up to `reps` times or until `budget_s` is spent (at least 3 repetitions unless
    smoke); `setup()` runs untimed before each repetition."""
    if smoke:
        reps, warmup = 1, 0
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    seconds: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(seconds) < reps and (len(seconds) < min(3, reps) or time.perf_counter() < deadline):
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return Figure(name, seconds, nbytes)


class RpycServer:
    """An RPyC classic server (threaded SlaveService) on 127.0.0.1, on a port it picks itself.
    By default with TCP_NODELAY on both ends (rpyc_server.py); `stock=True` runs the venv's
    unmodified `rpyc_classic` and a client with Nagle on, as RPyC ships."""

    def __init__(self, stock: bool = False):
        self.stock = stock
        if stock:
            cmd = [str(VENV_BIN / "rpyc_classic"), "--host", "127.0.0.1", "-p", "0"]
        else:
            cmd = [sys.executable, str(pathlib.Path(__file__).with_name("rpyc_server.py"))]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        self.port = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"server started on \[127\.0\.0\.1\]:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.close()
            raise RuntimeError("the RPyC classic server did not report its port within 20 s")
        # Keep draining its log so the server never blocks on a full pipe.
        import threading
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def connect(self):
        import rpyc
        from rpyc.core.stream import SocketStream
        return rpyc.classic.connect_stream(SocketStream.connect("127.0.0.1", self.port, nodelay=not self.stock))

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RpycRoundTrips:
    """Counts RPyC round trips on one connection: requests it waits for, and requests the server
    makes back to it (iterating a list passed by reference, say)."""

    def __init__(self, conn):
        self.count = 0
        sync_request = conn.sync_request
        dispatch = conn._dispatch_request

        def counted_sync(*args, **kwargs):
            self.count += 1
            return sync_request(*args, **kwargs)

        def counted_dispatch(*args, **kwargs):
            self.count += 1
            return dispatch(*args, **kwargs)

        conn.sync_request = counted_sync
        conn._dispatch_request = counted_dispatch

    def per_call(self, fn, calls: int = 3) -> float:
        before = self.count
        for _ in range(calls):
            fn()
        return (self.count - before) / calls


def ratio_line(label: str, value: float, goal: str, ok: bool) -> str:
    return f"  {label:<56} {value:8.3g}   goal {goal:<10} {'met' if ok else 'MISSED'}"


def bulk_file(directory: pathlib.Path, nbytes: int) -> pathlib.Path:
    path = directory / f"bulk-{nbytes}"
    if not path.exists() or path.stat().st_size != nbytes:
        chunk = os.urandom(1 << 20)
        with open(path, "wb") as f:
            for _ in range(nbytes >> 20):
                f.write(chunk)
    return path


def scratch_dir() -> pathlib.Path:
    """Bulk files live on tmpfs when there is one, so the disk is not what is measured."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return pathlib.Path(tempfile.mkdtemp(prefix="splitbrain-bench-", dir=base))


def print_json_figures(figures: list[Figure], stream=sys.stdout):
    for f in figures:
        stream.write(json.dumps({"name": f.name, "median_s": f.median, "p10_s": f.quantile(0.1),
                                 "p90_s": f.quantile(0.9), "n": f.n, "bytes": f.nbytes,
                                 "round_trips": f.round_trips}) + "\n")


def splitbrain_package():
    """The splitbrain package of the build tree, imported now (which installs its routing) with the
    benchmarks' own machinery declared: RPyC, the baseline, keeps the real modules."""
    python_dir = build_dir() / "python"
    if python_dir.is_dir() and str(python_dir) not in sys.path:
        sys.path.insert(0, str(python_dir))
    import splitbrain._routing
    splitbrain._routing.exempt("rpyc")
    return splitbrain


class Agent:
    """A loopback `splitbrain-agent serve` with fresh keys (splitbrain._spawn.Agent in *workdir*): the
    agent's in `keys/`, a client's in `client/` (same layout, for the C++ channel), the client's
    public key and *authorized* authorized."""

    def __init__(self, workdir: pathlib.Path, insecure: bool = False, timeout: float = 30,
                 authorized: tuple[str, ...] = (), extra: tuple[str, ...] = ()):
        splitbrain_package()  # not at import: bench_face takes hold of the real modules first
        from splitbrain import _spawn
        exe = str(agent_exe())
        workdir.mkdir(parents=True, exist_ok=True)
        self.client_keys = workdir / "client"
        if not (self.client_keys / "agent.key").exists():
            subprocess.run([exe, "keygen", str(self.client_keys)], check=True, stdout=subprocess.DEVNULL, timeout=30)
        keys = [(self.client_keys / "agent.pub").read_text().strip(), *authorized]
        venv = os.environ.get("SPLITBRAIN_VENV", str(ROOT / ".venv"))
        # SPLITBRAIN_BENCH_AGENT_ARGS: more `serve` flags, e.g. "--audit-log /tmp/a.log" to measure the audit log.
        extra = [*extra, *shlex.split(os.environ.get("SPLITBRAIN_BENCH_AGENT_ARGS", ""))]
        self.agent = _spawn.Agent(workdir, authorized=keys, insecure=insecure, python=venv, binary=exe,
                                  timeout=timeout, extra=list(extra))
        self.keys = self.agent.key_dir
        self.connection_file = self.agent.connection_file
        self.address = self.agent.address
        self.public_key = self.agent.public_key

    def close(self):
        self.agent.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
