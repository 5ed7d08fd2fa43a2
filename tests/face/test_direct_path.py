"""The direct connection is the default (issue 11 point 2; docs/protocol.md, "The direct
connection"): a session's calls go straight to its worker unless the client says
SPLITBRAIN_DIRECT=0 or the agent --no-direct, and the relay is the fallback when the worker's port
cannot be reached within a short bound."""
import os
import shutil
import socket
import subprocess

import pytest

import splitbrain
from splitbrain import _registry, _spawn
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


@pytest.mark.parametrize("client_env, agent_flags", [({"SPLITBRAIN_DIRECT": "0"}, ()), ({}, ("--no-direct",))],
                         ids=["SPLITBRAIN_DIRECT=0", "agent --no-direct"])
def test_the_relay_only_when_the_client_or_the_agent_says_so(monkeypatch, agent_of, client_env, agent_flags):
    monkeypatch.delenv("SPLITBRAIN_DIRECT", raising=False)
    for name, value in client_env.items():
        monkeypatch.setenv(name, value)
    agent = agent_of(*agent_flags)
    box = connect(agent)
    try:
        for _ in range(5):
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
            for _ in range(5):
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
