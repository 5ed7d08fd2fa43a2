"""Issue 10 point 13: a bounded soak. Several clients (threads, each with its own Slave) call an
agent behind a veth pair while the test cancels calls at random, kills a worker, cuts the link and
restarts the agent. It ends with every call accounted for (a reply, or an error with a stated
outcome: an error id, or KeyboardInterrupt for a cancel), every client working again, and nothing
leaked: no process of the agent's sessions left, the client's descriptors back to their baseline,
the client's and the supervisor's memory within bounds."""
import collections
import os
import pathlib
import random
import signal
import sys
import threading
import time

import splitbrain
from splitbrain import _registry, _spawn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import netns  # noqa: E402
from processes import alive, live_processes  # noqa: E402
from conftest import wait_until  # noqa: E402

CLIENTS = 3
MARK = f"120.{os.getpid() % 100000:05d}7"  # the sleep a cancelled call starts in the background
# The outcomes a call may have besides its reply, each a stated one.
STATED = {"agent_unreachable", "nothing_listening", "client_stalled", "session_lost", "no_session", "arrived_late",
          "closed", "cancelled"}
MEMORY_BOUND = 64 << 20  # issue 10 point 5's bound, for growth of the client and size of the supervisor


def fds():
    return len(os.listdir("/proc/self/fd"))


def rss(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def stacks(threads):
    import traceback
    frames = sys._current_frames()
    return "".join(f"\n{t.name}:\n" + "".join(traceback.format_stack(frames[t.ident])) for t in threads
                   if t.ident in frames)


class Client(threading.Thread):
    """Calls until told to stop; every call's outcome is recorded, none is lost."""

    def __init__(self, number, target, stop):
        super().__init__(name=f"soak-client-{number}", daemon=True)
        self.number, self.target, self.stop = number, target, stop
        self.random = random.Random(number)
        self.slave = None
        self.started = 0
        self.outcomes = []  # (monotonic time, op, outcome)
        self.workers = set()
        self.lock = threading.Lock()

    def record(self, op, outcome):
        self.outcomes.append((time.monotonic(), op, outcome))

    def call(self, op):
        modules = self.slave.modules
        if op == "pid":
            assert modules.os.getpid() == self.slave.pid
        elif op == "echo":
            assert modules.builtins.len("x" * 5000) == 5000
        elif op == "print":
            modules.builtins.print(f"soak {self.number}", file=modules.sys.stderr)
        elif op == "sleep":
            modules.time.sleep(0.2)
        elif op == "child":  # cancelled by ourselves: what it started must go with it
            slave = self.slave
            threading.Timer(0.3, slave.cancel_all).start()
            modules.subprocess.run(["sh", "-c", f"sleep {MARK} & wait"])

    def run(self):
        n = 0
        while not self.stop.is_set():
            if self.slave is None:
                n += 1
                self.started += 1
                try:
                    with self.lock:
                        self.slave = splitbrain.connect(self.target, name=f"soak-{self.number}-{n}", timeout=2.0)
                        self.workers.add(self.slave.pid)
                    self.record("connect", "ok")
                except Exception as exc:
                    self.record("connect", getattr(exc, "code", None) or repr(exc))
                    self.stop.wait(0.2)
                continue
            op = self.random.choice(["pid", "echo", "print", "sleep", "sleep", "child"])
            self.started += 1
            try:
                self.call(op)
                self.record(op, "ok")
            except KeyboardInterrupt:
                self.record(op, "cancelled")
            except Exception as exc:
                code = getattr(exc, "code", None)
                self.record(op, code or repr(exc))
                if code in ("session_lost", "no_session", "closed", "nothing_listening"):
                    self.drop()  # a new session, as a user would start one
        self.drop()

    def drop(self):
        with self.lock:
            slave, self.slave = self.slave, None
        if slave is not None:
            slave.close()


def test_issue_10_a_soak_accounts_for_every_call_and_leaks_nothing(tmp_path):
    netns.require()
    host = netns.Namespace("sb-soak")
    agent = None
    clients = []
    stop = threading.Event()
    try:
        client_public, _ = _registry.client_keys()
        binary = host.wrapper(str(tmp_path), _spawn.agent_binary())
        listen = f"tcp://{host.ns_ip}:7781"  # a namespace of our own: a fixed port, kept across the restart

        def start_agent():
            return _spawn.Agent(tmp_path / "agent", authorized=[client_public], listen=listen, binary=binary,
                                exit_with=os.getpid())

        agent = start_agent()
        target = f"{agent.address}?key={agent.public_key}"
        warm = splitbrain.connect(target, name="soak-warm-up", timeout=2.0)  # the shared context's sockets
        warm.modules.os.getpid()
        warm.close()
        baseline_fds, baseline_rss = fds(), rss()

        clients = [Client(k, target, stop) for k in range(CLIENTS)]
        for client in clients:
            client.start()
        canceller = random.Random(7)

        events = []

        def phase(seconds):  # random cancels meanwhile
            events.append((time.monotonic(), seconds))
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                time.sleep(canceller.uniform(0.2, 0.6))
                slave = canceller.choice(clients).slave
                if slave is not None:
                    slave.cancel_all()

        phase(3)
        victim = wait_until(lambda: clients[0].slave, 10, "client 0 to have a session")
        os.kill(victim.pid, signal.SIGKILL)  # a worker killed
        phase(3)
        host.cut()  # a link cut
        phase(3)
        host.restore()
        phase(3)
        agent.stop()  # the agent restarted, same address, same keys
        agent = start_agent()
        restarted = time.monotonic()
        phase(4)
        wait_until(lambda: all(any(t > restarted and outcome == "ok" and op != "connect"
                                   for t, op, outcome in c.outcomes) for c in clients),
                   20, "every client to work again after the restart",
                   diagnose=lambda: f": {[c.outcomes[-3:] for c in clients]}{stacks(clients)}\nphases: {events}")
        supervisor_rss = rss(agent.process.pid)
        stop.set()
        for client in clients:
            client.join(30)
            assert not client.is_alive(), f"{client.name} is stuck: {client.outcomes[-3:]}"

        # Every call accounted for: one outcome per call, each a reply or a stated failure.
        for client in clients:
            assert len(client.outcomes) == client.started, client.name
            unstated = [o for o in client.outcomes if o[2] != "ok" and o[2] not in STATED]
            assert unstated == [], f"{client.name}: {unstated}"
        outcomes = [o[2] for c in clients for o in c.outcomes]
        print("soak outcomes:", dict(collections.Counter(outcomes)), "fds", fds(), "baseline", baseline_fds,
              "client rss growth MiB", (rss() - baseline_rss) >> 20, "supervisor rss MiB", supervisor_rss >> 20)
        assert outcomes.count("ok") > 30, outcomes
        assert "cancelled" in outcomes
        assert {"session_lost", "agent_unreachable"} & set(outcomes), set(outcomes)

        # Nothing leaked: descriptors and memory of this client, the supervisor's memory...
        wait_until(lambda: fds() <= baseline_fds, 10, "the client's descriptors back to their baseline",
                   diagnose=lambda: f": {fds()} > {baseline_fds}")
        assert rss() - baseline_rss < MEMORY_BOUND
        assert supervisor_rss < MEMORY_BOUND
        # ... and, once the agent is gone, no process of any of its sessions.
        workers = set().union(*(c.workers for c in clients))
        agent.stop()
        wait_until(lambda: [pid for pid in workers if alive(pid)] == [], 10,
                   "the workers of the soak's sessions to be gone",
                   diagnose=lambda: f": {[pid for pid in workers if alive(pid)]}")
        wait_until(lambda: live_processes([b"sleep", MARK.encode()]) == [], 10,
                   "no process a soak call started to be left", diagnose=lambda: f": {live_processes([b'sleep', MARK.encode()])}")
    finally:
        stop.set()
        for client in clients:
            client.join(30)
        host.restore()
        if agent is not None:
            agent.stop()
        host.close()
