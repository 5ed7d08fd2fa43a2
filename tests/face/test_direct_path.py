"""The direct connection is the default (issue 11 point 2; docs/protocol.md, "The direct
connection"): after its first few calls (issue 11 point 4: a short session never pays a second
handshake) a session's calls go straight to its worker unless the client says SPLITBRAIN_DIRECT=0
or the agent --no-direct, and the relay is the fallback when the worker's port cannot be reached
within a short bound."""
import os
import shutil
import socket
import subprocess

import pytest

import splitbrain
from splitbrain import _registry, _slave, _spawn
from conftest import wait_until


def free_port(host):
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def connect(agent, address=None):
    return splitbrain.connect(f"{address or agent.address}?key={agent.public_key}", name="direct-path", timeout=5.0)


@pytest.fixture
def agent_of(tmp_path):
    started = []

    def start(*extra):
        client_public, _ = _registry.client_keys()
        started.append(_spawn.Agent(tmp_path / f"agent-{len(started)}", authorized=[f"lease {client_public}"],
                                    extra=extra, exit_with=os.getpid()))
        return started[-1]

    yield start
    for agent in started:
        agent.stop()


def test_calls_go_the_direct_way_by_default_also_to_a_spawned_agent(monkeypatch):
    monkeypatch.delenv("SPLITBRAIN_DIRECT", raising=False)
    box = splitbrain.spawn()  # its key may lease: the worker checks leases itself
    try:
        wait_until(lambda: box.modules.os.getpid() == box.pid and box._conn.direct, 10, "the direct connection")
    finally:
        box.close()


def test_a_session_asks_for_its_direct_port_only_after_its_first_calls(monkeypatch, agent_of):
    """A short session (connect, a call, close: W8) stays on the relay, with no port bound for it;
    after DIRECT_AFTER calls through the relay the client asks with a second hello, and the calls
    after it go the direct way. The descriptors the session's code opens stay ordinary numbers,
    also those opened while its own were open before the port was bound."""
    monkeypatch.delenv("SPLITBRAIN_DIRECT", raising=False)
    agent = agent_of()
    box = connect(agent)
    try:
        held = box.modules.os.open("/dev/null", os.O_RDONLY)  # the import of os and this: two calls
        assert not box._conn.direct
        assert "hello again" not in agent.log()
        for _ in range(_slave.DIRECT_AFTER):
            assert box.modules.os.getpid() == box.pid
        wait_until(lambda: box.modules.os.getpid() == box.pid and box._conn.direct, 10, "the direct connection",
                   diagnose=lambda: agent.log()[-2000:])
        assert "resumed (its hello again, over the same connection)" in agent.log()
        fd = box.modules.os.open("/dev/null", os.O_RDONLY)
        assert 0 <= fd < 1024 and 0 <= held < 1024, (fd, held)
        box.modules.os.close(fd)
        box.modules.os.close(held)
    finally:
        box.close()


def test_with_splitbrain_direct_1_the_hello_itself_asks_for_the_port(monkeypatch, agent_of):
    monkeypatch.setenv("SPLITBRAIN_DIRECT", "1")
    agent = agent_of()
    box = connect(agent)
    try:
        wait_until(lambda: box.modules.os.getpid() == box.pid and box._conn.direct, 10, "the direct connection")
        assert box.requests < _slave.DIRECT_AFTER
        assert "hello again" not in agent.log()
    finally:
        box.close()


@pytest.mark.parametrize("client_env, agent_flags", [({"SPLITBRAIN_DIRECT": "0"}, ()), ({}, ("--no-direct",))],
                         ids=["SPLITBRAIN_DIRECT=0", "agent --no-direct"])
def test_the_relay_only_when_the_client_or_the_agent_says_so(monkeypatch, agent_of, client_env, agent_flags):
    monkeypatch.delenv("SPLITBRAIN_DIRECT", raising=False)
    for name, value in client_env.items():
        monkeypatch.setenv(name, value)
    agent = agent_of(*agent_flags)
    box = connect(agent)
    try:
        for _ in range(_slave.DIRECT_AFTER + 5):  # past the point where a session asks for its port
            assert box.modules.os.getpid() == box.pid
        assert not box._conn.direct
    finally:
        box.close()


def test_a_worker_port_the_client_cannot_reach_leaves_the_session_on_the_relay(monkeypatch, agent_of):
    """SHALL: the agent reached through a forward (here socat on another loopback address) offers a
    port the client cannot reach; every call still answers, through the relay, and the worker gives
    the port up once a relayed request came without a handshake."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("needs socat")
    monkeypatch.delenv("SPLITBRAIN_DIRECT", raising=False)
    agent = agent_of()
    agent_port = int(agent.address.rsplit(":", 1)[1])
    port = free_port("127.0.0.2")
    forward = subprocess.Popen([socat, f"TCP-LISTEN:{port},bind=127.0.0.2,reuseaddr,fork",
                                f"TCP:127.0.0.1:{agent_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def forwarding():
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.2", port)) == 0
        wait_until(forwarding, 10, "socat to listen")
        box = connect(agent, f"tcp://127.0.0.2:{port}")
        try:
            for _ in range(_slave.DIRECT_AFTER + 5):  # past the point where the session asks for its port
                assert box.modules.os.getpid() == box.pid
            assert not box._conn.direct
            wait_until(lambda: "did not connect to this session's direct port" in agent.log(), 10,
                       "the worker to give its port up", diagnose=lambda: agent.log()[-2000:])
            assert box.modules.os.getcwd()  # the session goes on
        finally:
            box.close()
    finally:
        forward.kill()
        forward.wait(10)
