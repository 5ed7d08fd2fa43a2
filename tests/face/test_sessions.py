"""The channel's routing id is the session token: a client that reconnects with it (a new socket,
as after a network drop) gets its session back, objects included. A session whose worker died is
lost, and says so."""

import os
import signal
import threading

import pytest

import splitbrain
from conftest import wait_until
from splitbrain import _core


def test_a_client_reconnecting_with_its_session_token_resumes_its_session(fresh_box):
    kept = fresh_box.modules.io.BytesIO(b"kept across the reconnect")
    public, secret = splitbrain.client_keys()
    again = _core.Connection(fresh_box.name, fresh_box.address, fresh_box.public_key, public, secret,
                             fresh_box._session, 5.0, fresh_box)
    try:
        info = again.request("hello", {"session": fresh_box._session.hex()})
        assert info["resumed"] is True
        assert info["pid"] == fresh_box.pid  # the same worker
        assert again.request("call", {"o": kept._sb_oid, "path": ["getvalue"], "a": ()}) == b"kept across the reconnect"
    finally:
        again.close()


def test_a_new_session_token_gets_a_new_worker(fresh_box):
    public, secret = splitbrain.client_keys()
    token = os.urandom(16)
    other = _core.Connection("other", fresh_box.address, fresh_box.public_key, public, secret, token,
                             5.0, fresh_box)
    try:
        info = other.request("hello", {"session": token.hex()})
        assert info["resumed"] is False
        assert info["pid"] != fresh_box.pid
    finally:
        other.request("bye", None, 2.0)
        other.close()


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_issue_8_a_killed_worker_raises_session_lost_at_the_next_call(fresh_box):
    """SHALL raise splitbrain.SessionLost (the ``session_lost`` id, as the wire spells it) for every
    call of a session whose worker died, and say so in Slave.state."""
    worker = fresh_box.modules.os.getpid()
    assert worker == fresh_box.pid
    assert fresh_box.state == "connected"
    os.kill(worker, signal.SIGKILL)  # the agent is on loopback: its worker is a process of this machine
    wait_until(lambda: _gone(worker), what=f"the worker {worker} to die")
    with pytest.raises(splitbrain.SessionLost) as caught:
        fresh_box.modules.os.getcwd()
    assert caught.value.code == "session_lost"
    assert str(caught.value).startswith("[splitbrain.session_lost] the session's worker on ")
    assert str(caught.value).endswith("; its objects are gone. Reconnect to start a new session")
    assert isinstance(caught.value, splitbrain.RemoteError)
    assert caught.value.slave == fresh_box.name
    assert fresh_box.state == "session lost"
    with pytest.raises(splitbrain.SessionLost):  # and every call after it
        fresh_box.modules.os.getcwd()
    assert fresh_box.ping() > 0  # the agent itself still answers
    assert fresh_box.state == "session lost"


def test_issue_8_a_call_pending_when_its_worker_is_killed_raises_session_lost(fresh_box):
    worker = fresh_box.pid
    sleep = fresh_box.modules.time.sleep
    killer = threading.Timer(0.3, os.kill, (worker, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(splitbrain.SessionLost) as caught:
            sleep(30)
    finally:
        killer.join()
    assert "killed by SIGKILL" in str(caught.value)
    assert fresh_box.state == "session lost"
