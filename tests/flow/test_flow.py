"""Output flow through real processes (issue 10, points 1, 4 and 5): a client process whose stdout
is a pipe that this test stops reading while the slave floods it, and clients that stream for
longer than the agent's grace period or stop (SIGSTOP) while a call streams.

The bounds tested are the ones agent/README.md states ("Bounds"): the output a session holds
anywhere is at most the window (8 MiB of output cost), so no process grows by 64 MiB under any
flood; nothing is dropped; a live client is never expired, a silent one is after --grace."""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: helpers every suite shares
from deadline import wait_until  # noqa: E402

CLIENT = pathlib.Path(__file__).with_name("client.py")
MiB = 1 << 20
BOUND_KB = 64 * 1024  # what no process may grow by under a flood (agent/README.md, "Bounds")


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class ClientProcess:
    """client.py in a process of its own, its stdout a pipe this test reads (or does not)."""

    def __init__(self, tmp_path, code, flags=()):
        self.workdir = tmp_path / "agent"
        self.process = subprocess.Popen([sys.executable, str(CLIENT), str(self.workdir), json.dumps(list(flags)),
                                         code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr = []
        self.received = 0
        self.head = b""  # the first bytes of stdout
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._reader = None

    def _read_stderr(self):
        for line in self.process.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def _read_stdout(self):
        fd = self.process.stdout.fileno()
        while chunk := os.read(fd, MiB):
            if len(self.head) < 4096:
                self.head += chunk[:4096]
            self.received += len(chunk)

    def start_reading(self):
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def report(self, key, timeout=30.0):
        def find():
            for line in list(self.stderr):
                if line.startswith("{") and key in (report := json.loads(line)):
                    return report
            return None
        return wait_until(find, timeout, f"the client's {key!r} report", diagnose=self.diagnose)

    def diagnose(self):
        return f"\nclient stderr:\n{''.join(self.stderr)[-3000:]}\nagent log:\n{self.agent_log()[-3000:]}"

    def agent_log(self):
        try:
            return (self.workdir / "agent.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def finish(self, timeout):
        """Reads stdout to its end and waits for the exit; returns the exit status."""
        if self._reader is None:
            self.start_reading()
        self._reader.join(timeout)
        assert not self._reader.is_alive(), f"stdout did not end within {timeout} s{self.diagnose()}"
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the client did not exit within {timeout} s{self.diagnose()}")

    def kill(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()


@pytest.fixture
def clients(tmp_path):
    started = []

    def start(code, flags=()):
        client = ClientProcess(tmp_path / str(len(started)), code, flags)
        started.append(client)
        return client

    yield start
    for client in started:
        client.kill()


def block_reading(client, seconds):
    """Does not read the client's stdout for *seconds* (the condition under test), sampling the
    three processes' RSS meanwhile; returns the highest sample of each (kB)."""
    pids = client.report("pids")["pids"]
    highest = dict.fromkeys(pids, 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, pid in pids.items():
            highest[name] = max(highest[name], rss_kb(pid))
        time.sleep(0.1)
    return highest


FLOOD = """
import os
block = b"x" * 4096
for _ in range({count}):
    os.write(1, block)
"""


def test_a_flood_into_a_reader_that_stops_arrives_whole_and_no_process_grows_past_the_bound(clients):
    # 160 MB in 4 KiB writes; the reader stops for 6 s (longer than the 5 s liveness timeout, and
    # than the agent's --grace) while the slave writes as fast as it can. Today's main held all of it:
    # 270 MB client, 172 MB supervisor for 200 MB.
    count = 40000
    client = clients(FLOOD.format(count=count), ["--grace", "3"])
    start = client.report("pids")["rss"]
    sampled = block_reading(client, 6)
    status = client.finish(60)
    assert status == 0, client.diagnose()
    assert client.received == count * 4096, client.diagnose()
    assert "agent_unreachable" not in "".join(client.stderr) and "client_stalled" not in "".join(client.stderr)
    assert "expired" not in client.agent_log() and "dropped" not in client.agent_log()
    peak = client.report("peak")["peak"]
    for name in ("client", "agent", "worker"):
        grown = max(peak[name], sampled[name]) - start[name]
        assert grown < BOUND_KB, f"{name} grew by {grown} kB (from {start[name]} kB) under the flood{client.diagnose()}"


def test_printing_lines_into_a_blocked_stdout_keeps_the_session_and_every_line(clients):
    # The reproduction scaled down: print() per line (one small output event each), a
    # reader that does not drain for 8 s, an agent whose --grace is shorter than that.
    lines = 600000
    client = clients(f"for i in range({lines}): print(i)", ["--grace", "3"])
    start = client.report("pids")["rss"]
    sampled = block_reading(client, 8)
    status = client.finish(90)
    assert status == 0, client.diagnose()
    assert client.received == sum(len(str(i)) + 1 for i in range(lines)), client.diagnose()
    assert "agent_unreachable" not in "".join(client.stderr), client.diagnose()
    assert "expired" not in client.agent_log(), client.diagnose()
    peak = client.report("peak")["peak"]
    for name in ("client", "agent", "worker"):
        grown = max(peak[name], sampled[name]) - start[name]
        assert grown < BOUND_KB, f"{name} grew by {grown} kB (from {start[name]} kB){client.diagnose()}"


TICKS = """
import subprocess
subprocess.run(["sh", "-c", "i=0; while [ $i -lt {count} ]; do echo tick; sleep 0.3; i=$((i+1)); done"], check=True)
"""


def test_a_call_streaming_output_for_longer_than_the_grace_period_is_not_expired(clients):
    # 24 ticks, 0.3 s apart (7 s) on an agent with --grace 1.5: output flowing is the client's life.
    client = clients(TICKS.format(count=24), ["--grace", "1.5"])
    client.start_reading()
    assert client.finish(60) == 0, client.diagnose()
    assert client.head.count(b"tick\n") == 24, client.diagnose()
    assert "expired" not in client.agent_log(), client.diagnose()


def test_a_stopped_client_whose_call_streams_expires_after_the_grace_period_and_learns_it_when_it_resumes(clients):
    # The client stops (SIGSTOP: gone as far as the agent can tell) while its call prints a tick
    # every 0.3 s for ever. Today's main kept such a session 10 min, then said "expired after 5 s".
    client = clients(TICKS.format(count=100000), ["--grace", "2"])
    client.start_reading()
    worker = client.report("pids")["pids"]["worker"]
    wait_until(lambda: client.head.count(b"tick\n") >= 2, 20, "two ticks", diagnose=client.diagnose)
    client.process.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    line = wait_until(lambda: next((line for line in client.agent_log().splitlines() if "expired" in line), None),
                      15, "the session's expiry in the agent log", diagnose=client.diagnose)
    quiet = re.search(r"expired: its client sent nothing for ([0-9.]+) s \(--grace 2 s\), with 1 call pending", line)
    assert quiet, line
    # What the line says is true: more than the grace period, and no more than since the stop
    # plus the client's at most one second between messages (and the agent's 0.5 s poll).
    assert 2 < float(quiet.group(1)) < time.monotonic() - stopped + 2, line
    wait_until(lambda: rss_kb(worker) == 0, 10, "the worker's end", diagnose=client.diagnose)
    client.process.send_signal(signal.SIGCONT)
    status = client.finish(20)
    assert status == 1, client.diagnose()
    stderr = "".join(client.stderr)
    assert "SessionLost" in stderr and "the session expired on " in stderr, client.diagnose()
