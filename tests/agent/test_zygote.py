"""The zygote (issue 11 point 4): every session's worker is a fork of a worker that initialised
Python once, and is nonetheless what an exec'd worker was: its own process, process group and
Python state, a child of the supervisor, gone with a killed agent."""
import os
import signal
import time

from conftest import Agent, wait_until


def _cmdline(pid):
    return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")


def _stat(pid):
    """(state, ppid, pgid) of a process."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2])


def _running(pid):
    try:
        return _stat(pid)[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _forked_session(agent):
    """A client whose worker came from the zygote: the agent's first spare is exec'd, and the
    zygote starts when the next one is due."""
    for _ in range(4):
        client = agent.client()
        if b"--zygote" in _cmdline(client.info["pid"]):
            return client
        wait_until(lambda: agent.zygote() is not None and len(agent.workers()) >= 2,
                   what="the zygote and the next spare worker")
    raise AssertionError("no session's worker was forked by the zygote:\n" + agent.log())


def test_back_to_back_sessions_get_forked_workers_of_their_own(agent):
    first = _forked_session(agent)
    clients = [first] + [agent.client() for _ in range(8)]
    pids = [c.info["pid"] for c in clients]
    assert len(set(pids)) == len(pids)
    for pid in pids[1:]:
        assert b"--zygote" in _cmdline(pid), f"worker {pid} was exec'd, not forked: {_cmdline(pid)}"
    for pid in pids:
        state, ppid, pgid = _stat(pid)
        # A child of the supervisor (it waits for it, reports its end), leading its own group
        # (its children end with it), named as an exec'd worker.
        assert ppid == agent.process.pid and pgid == pid, (pid, ppid, pgid)
        assert open(f"/proc/{pid}/comm").read().strip() == "splitbrain-work"
    for c in clients:
        assert c.ok("bye") is None
        c.close()


def test_forked_workers_share_no_python_state(agent):
    a = _forked_session(agent)
    b = agent.client()
    assert b"--zygote" in _cmdline(b.info["pid"])
    builtins_a, builtins_b = a.module("builtins"), b.module("builtins")
    a.value(builtins_a, "import sys; sys.marked_by_a = 1", path=["exec"])
    assert b.value(builtins_b, "hasattr(__import__('sys'), 'marked_by_a')", path=["eval"]) is False
    assert a.value(builtins_a, "hasattr(__import__('sys'), 'marked_by_a')", path=["eval"]) is True
    # The random module reseeds in each fork: two sessions do not draw the same numbers.
    draws = [c.value(c.module("random"), path=["random"]) for c in (a, b)]
    assert draws[0] != draws[1]
    # A full collection in a fork works (it walks its own objects: the zygote froze the ones it shares).
    assert a.value(a.module("gc"), 2, path=["collect"]) >= 0
    a.value(a.module("os"), "/", path=["chdir"])
    assert b.value(b.module("os"), path=["getcwd"]) == os.getcwd()
    a.close(), b.close()


def test_a_forked_worker_starts_its_session_as_an_execd_one_would(agent):
    # Before it says ready, a fork rehearses a session's first import (issue 11 point 4): nothing
    # of it is left, neither an object nor a used object id.
    client = _forked_session(agent)
    assert client.ok("stats") == {"objects": 0}
    first = client.module("os")
    assert first.oid == 1 and first.type == "builtins.module", first
    assert client.ok("stats") == {"objects": 1}
    assert client.value(first, path=["getcwd"]) == os.getcwd()
    client.close()


def test_a_session_in_a_forked_worker_is_cancelled_and_sees_its_own_output(agent):
    client = _forked_session(agent)
    builtins = client.module("builtins")
    assert client.value(builtins, "print('from the fork', flush=True)", path=["exec"]) is None
    assert client.output() == b"from the fork\n"
    client.send({"id": 99, "op": "call", "o": builtins.wire(), "path": ["exec"], "a": ["import time; time.sleep(30)"]})
    time.sleep(0.2)  # let it start: a cancel of a queued request is another path
    assert client.request("cancel", target=99)["ok"]
    reply = client.wait_reply(99, timeout=5)
    assert not reply["ok"] and reply["e"]["type"] == "builtins.KeyboardInterrupt", reply
    client.close()


def test_killing_the_agent_ends_the_zygote_its_workers_and_their_children(tmp_path):
    agent = Agent(tmp_path / "a")
    try:
        client = _forked_session(agent)
        sleeper = client.ok("getattr", o=client.value(client.module("subprocess"), ["sleep", "300"],
                                                      path=["Popen"]).wire(), name="pid")
        zygote = agent.zygote()
        workers = agent.workers()
        assert zygote and running_all([zygote, sleeper, *workers])
        agent.process.send_signal(signal.SIGKILL)
        agent.process.wait(10)
        for pid in [zygote, sleeper, *workers]:
            wait_until(lambda: not _running(pid), timeout=10, what=f"process {pid} to end after the agent's SIGKILL")
        client.close()
    finally:
        agent.stop()


def running_all(pids):
    return all(_running(p) for p in pids)


def test_a_killed_zygote_is_started_again(agent):
    first = _forked_session(agent)
    zygote = agent.zygote()
    os.kill(zygote, signal.SIGKILL)
    agent.wait_for_log(r"the zygote ended with signal 9; starting it again")
    wait_until(lambda: agent.zygote() not in (None, zygote), what="a new zygote")
    # The session forked by the old zygote goes on, and new sessions come from the new one.
    assert first.value(first.module("os"), path=["getpid"]) == first.info["pid"]
    later = _forked_session(agent)
    assert later.value(later.module("os"), path=["getpid"]) == later.info["pid"]
    first.close(), later.close()


def test_no_zygote_execs_every_worker(tmp_path):
    agent = Agent(tmp_path / "a", extra=["--no-zygote"])
    try:
        clients = [agent.client() for _ in range(2)]
        for c in clients:
            assert b"--id" in _cmdline(c.info["pid"]) and b"--zygote" not in _cmdline(c.info["pid"])
            c.close()
        assert agent.zygote() is None
    finally:
        agent.stop()
