"""Every message names its session token: a client that reconnects with it (a new socket, as after
a network drop) gets its session back, objects included. A session whose worker died is
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
                             fresh_box._session.encode(), 5.0, fresh_box)
    try:
        info = again.request("hello", {"session": fresh_box._session})
        assert info["resumed"] is True
        assert info["pid"] == fresh_box.pid  # the same worker
        assert again.request("call", {"o": kept._sb_oid, "path": ["getvalue"], "a": ()}) == b"kept across the reconnect"
    finally:
        again.close()


def test_a_new_session_token_gets_a_new_worker(fresh_box):
    public, secret = splitbrain.client_keys()
    token = os.urandom(16).hex()
    other = _core.Connection("other", fresh_box.address, fresh_box.public_key, public, secret, token.encode(),
                             5.0, fresh_box)
    try:
        info = other.request("hello", {"session": token})
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


def test_issue_10_a_segfaulting_worker_raises_session_lost(fresh_box):
    """SHALL raise SessionLost for a worker that dies of a segfault, say so in Slave.state, and keep
    raising it for later calls of that session."""
    ctypes = fresh_box.modules.ctypes
    with pytest.raises(splitbrain.SessionLost) as caught:
        ctypes.string_at(0)
    assert caught.value.code == "session_lost"
    assert "killed by SIGSEGV" in str(caught.value)
    assert fresh_box.state == "session lost"
    with pytest.raises(splitbrain.SessionLost):
        fresh_box.modules.os.getcwd()
    assert fresh_box.state == "session lost"


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RestartableAgent:
    """A private agent on a fixed loopback port and key directory, so that it can be restarted on the
    same address with the same keys, as a real agent is after a reboot."""

    def __init__(self, workdir):
        from splitbrain import _spawn
        self._spawn = _spawn
        self.workdir = workdir
        self.our_key, _ = splitbrain.client_keys()
        self.listen = f"tcp://127.0.0.1:{_free_port()}"
        self.agent = self._start()

    def _start(self):
        return self._spawn.Agent(self.workdir, authorized=[self.our_key], listen=self.listen)

    def restart(self):
        self.agent.stop()
        self.agent = self._start()
        return self.agent


@pytest.fixture
def restartable(tmp_path):
    a = RestartableAgent(tmp_path / "agent")
    yield a
    a.agent.stop()


def test_issue_10_after_an_agent_restart_the_same_slave_opens_a_new_session_by_itself(restartable):
    """SHALL (issue 10, point 6) recover from a restart of the agent on the same address with the
    same keys: old proxies raise SessionLost, new calls work, Slave.state says what happened."""
    box = None
    try:
        box = splitbrain.connect(str(restartable.agent.connection_file), name="restarting")
        old = box.modules.io.BytesIO(b"from before")
        old_pid = box.pid
        assert box.modules.os.getpid() == old_pid
        assert restartable.restart().address == box.address
        # Once the link is back, the next call opens a new session: first through the module, then in a context.
        wait_until(lambda: box._conn.handshakes > 1, timeout=10, what="the link to the restarted agent")
        pid = box.modules.os.getpid()
        assert pid != old_pid and pid == box.pid
        assert box.state == "new session: the agent had lost the old one (restarted, or the session expired)"
        assert box.sessions == 2
        with pytest.raises(splitbrain.SessionLost) as caught:
            old.getvalue()
        assert "objects from before the restart are gone" in str(caught.value)
        with box:
            import os as routed_os
            assert routed_os.getpid() == pid
        fresh = box.modules.io.BytesIO(b"after")
        assert fresh.getvalue() == b"after"
        del old  # releasing a proxy of the old session sends nothing
        assert box.stats()["objects"] >= 1
    finally:
        if box is not None:
            box.close()


def test_issue_10_a_call_on_an_old_proxy_first_after_a_restart_raises_session_lost_then_calls_work(restartable):
    box = None
    try:
        box = splitbrain.connect(str(restartable.agent.connection_file), name="restarting-2")
        old = box.modules.io.BytesIO(b"from before")
        restartable.restart()

        def old_call_fails_with_session_lost():
            try:
                old.getvalue()
            except splitbrain.SessionLost as e:
                return e
            except splitbrain.AgentUnreachable:
                return None  # the restarted agent is not reached yet
            raise AssertionError("a proxy of the old session still answered")
        caught = wait_until(old_call_fails_with_session_lost, timeout=10, what="SessionLost from an old proxy")
        assert "objects from before the restart are gone" in str(caught)
        assert box.state == "session lost"
        assert box.modules.os.getpid() == box.pid  # the next call opens the new session
        assert box.state.startswith("new session")
        with pytest.raises(splitbrain.SessionLost):
            old.getvalue()
    finally:
        if box is not None:
            box.close()


def test_issue_10_a_call_waiting_across_an_agent_restart_fails_with_session_lost_and_says_it_may_have_run(restartable):
    """The restarted agent answers our pings but has no reply for us: the waiting call learns so
    from a ping ("known": false) instead of waiting for ever, and says it had reached the agent."""
    import threading
    import time
    box = None
    try:
        # A liveness that a restart on a loaded machine stays well inside (pings every 2 s).
        box = splitbrain.connect(str(restartable.agent.connection_file), name="restarting-3", timeout=6.0)
        box.modules.os.getpid()
        restarter = threading.Timer(4.5, restartable.restart)  # after two pings answered: it had reached the agent
        restarter.start()
        start = time.monotonic()
        try:
            with pytest.raises(splitbrain.SessionLost) as caught:
                box.modules.time.sleep(60)
        finally:
            restarter.join()
        assert time.monotonic() - start < 30
        assert str(caught.value) == (
            f"[splitbrain.session_lost] restarting-3 ({box.address}) no longer has this session (the agent "
            f"restarted, or the session expired), so no reply will come; the call had reached it and may have run "
            f"there. Objects from before are gone; the next call opens a new session")
        assert box.modules.os.getpid() == box.pid  # a new session
    finally:
        if box is not None:
            box.close()
