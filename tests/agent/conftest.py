"""Fixtures for the agent suite: real splitbrain-agent processes from the build tree, and an
independent client written with pyzmq + cbor2 straight from docs/protocol.md."""
import itertools
import os
import pathlib
import re
import secrets
import subprocess
import sys
import time

import cbor2
import pytest
import zmq

from wire import Ref, box, unbox

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: helpers every suite shares
from deadline import wait_until  # noqa: E402,F401  (the suite's tests import it from here)
from machinery import PACKAGES  # noqa: E402

import splitbrain._routing  # noqa: E402  (the one agent launcher, splitbrain._spawn)
from splitbrain import _spawn  # noqa: E402

splitbrain._routing.exempt(*PACKAGES)

BUILD_DIR = pathlib.Path(os.environ.get("SPLITBRAIN_BUILD_DIR", pathlib.Path(__file__).parents[2] / "build"))
AGENT = BUILD_DIR / "agent" / "splitbrain-agent"


class Agent(_spawn.Agent):
    """One `splitbrain-agent serve` process of the build tree, with a client key pair of its own
    authorized (plus *authorized*); its log is a file the tests read. The workers see the agent's
    default Python unless *extra* says --python."""

    def __init__(self, workdir, *, insecure=False, extra=(), authorized=()):
        self.client_public, self.client_secret = zmq.curve_keypair()
        super().__init__(workdir, authorized=[self.client_public.decode(), *authorized], insecure=insecure,
                         listen="tcp://127.0.0.1:0", python=None, extra=extra, binary=str(AGENT), timeout=10.0)

    def wait_for_log(self, pattern, timeout=10.0):
        return wait_until(lambda: re.search(pattern, self.log()), timeout, f"/{pattern}/ in the agent log")

    def workers(self):
        """pids of this agent's worker processes (spare included; not its janitor nor its zygote)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split() if self._comm(int(pid)) not in ("sb-janitor", "sb-zygote")]

    @staticmethod
    def _comm(pid):
        try:
            return open(f"/proc/{pid}/comm").read().strip()
        except FileNotFoundError:
            return None

    @classmethod
    def _is_janitor(cls, pid):
        return cls._comm(pid) == "sb-janitor"

    def zygote(self):
        """pid of the agent's zygote (the process that forks the workers), or None."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return next((int(pid) for pid in out.split() if self._comm(int(pid)) == "sb-zygote"), None)

    def janitor(self):
        """pid of the agent's janitor (the process that cleans up after a killed agent), or None."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return next((int(pid) for pid in out.split() if self._is_janitor(int(pid))), None)

    def client(self, **kwargs):
        return Client(self, **kwargs)


class Reply(dict):
    pass


class Client:
    """A DEALER speaking protocol version 1: every request names the session token. The agent's
    ROUTER assigns the routing id unless *routing_id* sets one (as an attacker may)."""

    _context = zmq.Context.instance()

    def __init__(self, agent, *, session=None, public=None, secret=None, hello=True, routing_id=None):
        self.agent = agent
        self.session = session or secrets.token_hex(16)
        self.events = []
        self.replies = {}  # arrived, not yet claimed by wait_reply
        self.ids = itertools.count(1)
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if routing_id is not None:
            self.socket.setsockopt(zmq.ROUTING_ID, routing_id)
        if agent.public_key is not None:
            self.socket.curve_serverkey = agent.public_key.encode()
            self.socket.curve_publickey = public or agent.client_public
            self.socket.curve_secretkey = secret or agent.client_secret
        self.socket.connect(agent.address)
        self.info = self.request("hello", session=self.session)["r"] if hello else None

    def send(self, header, frames=()):
        self.socket.send_multipart([cbor2.dumps({"session": self.session, **header}), *frames])

    def receive(self, timeout=10.0):
        """Next message as (header, frames); None on timeout."""
        if not self.socket.poll(int(timeout * 1000)):
            return None
        parts = self.socket.recv_multipart()
        return cbor2.loads(parts[0]), parts[1:]

    def wait_reply(self, request_id, timeout=10.0):
        """Collects output events until the reply for request_id arrives."""
        deadline = time.monotonic() + timeout
        while True:
            if request_id in self.replies:
                return self.replies.pop(request_id)
            left = deadline - time.monotonic()
            message = self.receive(max(left, 0))
            if message is None:
                raise AssertionError(f"no reply to request {request_id} within {timeout} s")
            header, frames = message
            if "ev" in header:
                self.events.append(header)
                continue
            reply = Reply(header)
            reply.frames = frames
            self.replies[header.get("id")] = reply

    def request(self, op, frames=(), timeout=10.0, **fields):
        request_id = next(self.ids)
        self.send({"id": request_id, "op": op, **fields}, frames)
        return self.wait_reply(request_id, timeout)

    def ok(self, op, **fields):
        reply = self.request(op, **fields)
        assert reply["ok"], reply.get("e")
        return reply["r"]

    def module(self, name):
        """import name on the agent; the module as a Ref."""
        return Ref(self.ok("import", name=name)["mod"])

    def call(self, target, *args, path=(), timeout=10.0, **kwargs):
        """The raw reply of calling target.path(*args, **kwargs) on the agent."""
        frames = []
        fields = {"o": target.wire(), "a": [box(a, frames) for a in args]}
        if path:
            fields["path"] = list(path)
        if kwargs:
            fields["k"] = box(kwargs, frames)
        return self.request("call", frames=frames, timeout=timeout, **fields)

    def value(self, target, *args, path=(), **kwargs):
        """The unboxed result of a call that must succeed."""
        reply = self.call(target, *args, path=path, **kwargs)
        assert reply["ok"], reply.get("e")
        return unbox(reply["r"], reply.frames)

    def output(self, fd=1):
        return b"".join(e["d"] for e in self.events if e["ev"] == "out" and e["fd"] == fd)

    def close(self):
        self.socket.close(0)


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path / "agent")
    yield a
    a.stop()


@pytest.fixture
def client(agent):
    c = agent.client()
    yield c
    c.close()


class Key:
    """A client key pair of its own and its authorized_keys line, with OPTIONS before the key."""

    def __init__(self, options="", comment="alice@lab-pc"):
        self.public, self.secret = zmq.curve_keypair()
        self.comment = comment
        self.line = f"{options + ' ' if options else ''}{self.public.decode()}  # {comment}"

    def client(self, agent, **kwargs):
        return agent.client(public=self.public, secret=self.secret, **kwargs)
