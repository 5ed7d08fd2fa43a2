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


def test_issue_10_another_key_with_the_victims_old_routing_id_gets_none_of_its_replies(tmp_path):
    """SHALL send replies only to the connection the session's key opened (issue 10, point 8). The
    attacker is a raw pyzmq DEALER with its own authorized key; it claims the routing id a client
    used to choose (its session token), says hello, and names the victim's session."""
    import threading

    import cbor2
    import zmq

    our_key, _ = splitbrain.client_keys()
    attacker_public, attacker_secret = zmq.curve_keypair()
    with _spawn.Agent(tmp_path / "shared", authorized=[our_key, attacker_public.decode()]) as agent:
        victim = splitbrain.connect(str(agent.connection_file), name="victim")
        attacker = zmq.Context.instance().socket(zmq.DEALER)
        try:
            builtins = victim.modules.builtins
            answer = {}
            call = threading.Thread(target=lambda: answer.setdefault("r", builtins.eval(
                "__import__('time').sleep(1.0) or 'SECRET-DATA-OF-VICTIM'")))
            call.start()
            attacker.linger = 0
            attacker.routing_id = bytes.fromhex(victim._session) if isinstance(victim._session, str) \
                else victim._session
            attacker.curve_serverkey = agent.public_key.encode()
            attacker.curve_publickey, attacker.curve_secretkey = attacker_public, attacker_secret
            attacker.connect(agent.address)
            token = victim._session.hex() if isinstance(victim._session, bytes) else victim._session
            attacker.send(cbor2.dumps({"id": 1, "op": "hello", "session": "attacker-" + token[:8]}))
            attacker.send(cbor2.dumps({"id": 2, "op": "stats", "session": token}))
            got = []
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                if attacker.poll(100):
                    got.append(cbor2.loads(attacker.recv_multipart()[0]))
            call.join(10)
            assert answer.get("r") == "SECRET-DATA-OF-VICTIM"
            assert victim.modules.os.getpid() == victim.pid  # the victim's route is still its own
            by_id = {m.get("id"): m for m in got if "id" in m}
            assert by_id[1]["ok"] is True  # the attacker's own session
            assert by_id[2]["e"]["code"] == "no_session"  # the victim's is not its to use
            assert not any(b"SECRET" in cbor2.dumps(m) for m in got), got
            assert set(by_id) == {1, 2}, got
        finally:
            attacker.close(0)
            victim.close()
