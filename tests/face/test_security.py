"""CurveZMQ from the client's side: a client whose key the agent does not accept gets nothing and an
error that says where to look; plain text only when the connection says `public_key: null`."""

import json
import time

import pytest

import splitbrain
from splitbrain import _spawn


def test_a_client_whose_key_the_agent_refuses_is_told_so_at_once(tmp_path):
    someone_else, _ = splitbrain._core.curve_keypair()
    with _spawn.Agent(tmp_path / "refusing", authorized=[someone_else]) as agent:
        start = time.monotonic()
        with pytest.raises(splitbrain.KeyRefused) as caught:
            splitbrain.connect(str(agent.connection_file), name="refusing")
        assert time.monotonic() - start < 2  # the handshake's answer, not the 5 s liveness timeout
    our_key, _ = splitbrain.client_keys()
    assert str(caught.value).startswith("[splitbrain.key_refused] refusing (tcp://127.0.0.1:")
    assert str(caught.value).endswith(f") refused this client's key {our_key}; add it to the agent's "
                                      "--authorized-keys file")
    assert isinstance(caught.value, splitbrain.AgentUnreachable)
    assert "refusing" not in splitbrain.known_slaves()


def test_a_loopback_insecure_agent_is_reached_in_plain_text(tmp_path):
    with _spawn.Agent(tmp_path / "plain", insecure=True) as agent:
        info = json.loads(agent.connection_file.read_text())
        assert info["public_key"] is None
        box = splitbrain.connect(str(agent.connection_file), name="plain")
        try:
            assert box.modules.os.getpid() == box.pid
            assert box.public_key is None
        finally:
            box.close()
