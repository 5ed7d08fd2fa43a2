"""Sessions: one worker each, a crash ends only its own session, reconnecting resumes, silence
expires, SIGTERM shuts everything down cleanly."""
import os
import signal
import time

import pytest
import zmq

from conftest import Agent, wait_until


def test_each_session_has_its_own_worker(agent):
    first, second = agent.client(), agent.client()
    assert first.info["pid"] != second.info["pid"]
    first.value(first.module("os"), "/", path=["chdir"])
    assert second.value(second.module("os"), path=["getcwd"]) == os.getcwd()
    first.close(), second.close()


def test_a_new_session_starts_fast_on_the_spare_worker(agent):
    spare = wait_until(lambda: len(agent.workers()) == 1 and agent.workers()[0], what="the spare worker")
    # Its IO thread (the 4th thread, after libzmq's two) starts once Python is initialised.
    wait_until(lambda: len(os.listdir(f"/proc/{spare}/task")) >= 4, what="the spare worker to be ready")
    started = time.monotonic()
    client = agent.client()
    elapsed = time.monotonic() - started
    assert elapsed < 0.25, f"hello took {elapsed * 1000:.0f} ms"
    wait_until(lambda: len(agent.workers()) == 2, what="a new spare worker")
    client.close()


def test_a_crashing_worker_ends_only_its_session(agent):
    doomed, healthy = agent.client(), agent.client()
    ctypes = doomed.module("ctypes")
    reply = doomed.call(ctypes, 0, path=["string_at"])
    assert reply["ok"] is False
    assert reply["e"]["code"] == "session_lost"
    assert reply["e"]["msg"].startswith("[splitbrain.session_lost] ")
    assert "SIGSEGV" in reply["e"]["msg"]
    assert doomed.request("ping")["ok"]  # the agent itself answers
    assert doomed.request("stats")["e"]["code"] == "session_lost"
    agent.wait_for_log(r"session \w+ lost: its worker \(pid \d+\) ended with killed by SIGSEGV")
    assert healthy.value(healthy.module("os"), path=["getpid"]) == healthy.info["pid"]
    doomed.close(), healthy.close()


def test_a_killed_worker_fails_the_pending_call_while_another_session_goes_on(agent):
    victim, other = agent.client(), agent.client()
    time_ = victim.module("time")
    sleeping = next(victim.ids)
    victim.send({"id": sleeping, "op": "call", "o": time_.wire(), "path": ["sleep"], "a": [30]})
    other_sleep = next(other.ids)
    other.send({"id": other_sleep, "op": "call", "o": other.module("time").wire(), "path": ["sleep"], "a": [0.5]})
    os.kill(victim.info["pid"], signal.SIGKILL)
    reply = victim.wait_reply(sleeping, timeout=5)
    assert reply["e"]["code"] == "session_lost"
    assert other.wait_reply(other_sleep)["ok"]
    # hello with the same token starts over with a fresh worker.
    again = victim.request("hello", session=victim.session)
    assert again["r"]["resumed"] is False and again["r"]["pid"] != victim.info["pid"]
    victim.close(), other.close()


def test_a_client_that_reconnects_within_grace_resumes_its_session(agent):
    first = agent.client()
    fractions = first.module("fractions")
    third = first.value(fractions, 1, 3, path=["Fraction"])
    first.close()
    second = agent.client(session=first.session)
    assert second.info["resumed"] is True
    assert second.info["pid"] == first.info["pid"]
    assert second.ok("repr", o=third.wire()) == "Fraction(1, 3)"
    agent.wait_for_log(rf"session {first.session[:12]} resumed")
    second.close()


def test_a_session_cannot_be_resumed_with_another_client_key(tmp_path):
    public, secret = zmq.curve_keypair()
    agent = Agent(tmp_path / "a", authorized=[public.decode()])
    try:
        owner = agent.client()
        intruder = agent.client(public=public, secret=secret, hello=False)
        reply = intruder.request("hello", session=owner.session)
        assert reply["e"]["code"] == "no_session"
        assert "belongs to another client key" in reply["e"]["msg"]
        assert owner.ok("stats")["objects"] == 0
        owner.close(), intruder.close()
    finally:
        agent.stop()


def test_a_silent_session_expires_after_the_grace_period(tmp_path):
    agent = Agent(tmp_path / "a", extra=["--grace", "0.5"])
    try:
        client = agent.client()
        pid = client.info["pid"]
        agent.wait_for_log(r"session \w+ expired: its client sent nothing for [0-9.]+ s \(--grace 0\.5 s\), "
                           r"with 0 calls pending", timeout=5)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the expired worker to exit")
        assert client.request("stats")["e"]["code"] == "no_session"
        client.close()
    finally:
        agent.stop()


def test_pings_keep_a_session_alive(tmp_path):
    # Pings every 0.2 s for 2.7 times the grace: a gap between two pings (a test process not
    # scheduled on a loaded machine) may last up to 1.3 s before the session would expire.
    agent = Agent(tmp_path / "a", extra=["--grace", "1.5"])
    try:
        client = agent.client()
        until = time.monotonic() + 4.0
        while time.monotonic() < until:
            time.sleep(0.2)
            assert client.request("ping")["ok"]
        assert client.ok("stats")["objects"] == 0
        client.close()
    finally:
        agent.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_shuts_down_cleanly_with_workers(tmp_path, signum):
    agent = Agent(tmp_path / "a")
    client = agent.client()
    workers = wait_until(lambda: len(agent.workers()) == 2 and agent.workers(), what="session and spare workers")
    agent.process.send_signal(signum)
    assert agent.process.wait(10) == 0
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert "shutting down" in agent.log()
    client.close()
    agent.stop()


def test_workers_die_with_a_killed_agent(tmp_path):
    agent = Agent(tmp_path / "a")
    client = agent.client()
    workers = wait_until(lambda: len(agent.workers()) == 2 and agent.workers(), what="session and spare workers")
    agent.process.kill()
    agent.process.wait()
    for pid in workers:
        wait_until(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z",
                   timeout=5, what=f"worker {pid} to die with its agent")
    client.close()
    agent.stop()



def test_a_worker_that_ignores_sigterm_is_killed_when_its_session_ends(tmp_path):
    # The grace outlasts the set-up's requests on a loaded machine: this test client sends no
    # keepalive pings, and a session expires busy or idle.
    agent = Agent(tmp_path / "a", extra=["--grace", "2"])
    try:
        client = agent.client()
        signal_ = client.module("signal")
        assert client.call(signal_, int(signal.SIGTERM), int(signal.SIG_IGN), path=["signal"])["ok"]
        pid = client.info["pid"]
        agent.wait_for_log(r"session \w+ expired", timeout=10)
        agent.wait_for_log(rf"worker pid {pid} ignored SIGTERM; killing it", timeout=10)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the stubborn worker to be gone")
        client.close()
    finally:
        agent.stop()


def test_workers_talk_to_the_supervisor_through_a_private_directory(agent):
    client = agent.client()
    arguments = open(f"/proc/{client.info['pid']}/cmdline", "rb").read().split(b"\0")
    endpoint = arguments[arguments.index(b"--connect") + 1].decode()
    assert endpoint.startswith("ipc://")
    directory = os.path.dirname(endpoint[len("ipc://"):])
    assert oct(os.stat(directory).st_mode & 0o777) == "0o700"
    client.close()
    agent.stop()
    assert not os.path.exists(directory)


def running(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def start_background_sleep(client):
    """subprocess.Popen(["sleep", "300"]) in the worker's own process group; its pid."""
    popen = client.value(client.module("subprocess"), ["sleep", "300"], path=["Popen"], start_new_session=False)
    pid = client.ok("getattr", o=popen.wire(), name="pid")
    assert running(pid)
    assert os.getpgid(pid) == client.info["pid"]
    return pid


@pytest.mark.parametrize("ending", ["expiry", "bye", "agent SIGTERM"])
def test_background_children_of_a_worker_end_with_its_session(tmp_path, ending):
    # SHALL: nothing a session started outlives it. The grace outlasts the set-up's requests (a
    # Popen) on a loaded machine: this test client sends no keepalive pings.
    agent = Agent(tmp_path / "a", extra=["--grace", "2"])
    try:
        client = agent.client()
        sleeper = start_background_sleep(client)
        if ending == "expiry":
            client.close()
            agent.wait_for_log(r"session \w+ expired", timeout=10)
        elif ending == "bye":
            assert client.request("bye")["ok"]
            client.close()
        else:
            agent.process.send_signal(signal.SIGTERM)
            assert agent.process.wait(10) == 0
            client.close()
        wait_until(lambda: not running(sleeper), timeout=5, what=f"the background sleep {sleeper} to end")
    finally:
        agent.stop()


def test_issue_10_a_second_key_claiming_the_victims_routing_id_gets_none_of_its_replies(tmp_path):
    """SHALL send replies only to the connection that the session's CURVE key opened: another
    authorized key that connects with the routing id the victim's client used to choose (its
    session token) and re-sends hello gets neither the victim's reply nor its route."""
    public, secret = zmq.curve_keypair()
    agent = Agent(tmp_path / "a", authorized=[public.decode()])
    try:
        victim = agent.client()
        builtins_ = victim.module("builtins")
        secret_call = next(victim.ids)
        victim.send({"id": secret_call, "op": "call", "o": builtins_.wire(), "path": ["exec"],
                     "a": ["import time; time.sleep(1.0); print('SECRET-DATA-OF-VICTIM')"]})
        # The attacker: a raw pyzmq DEALER with its own authorized key and the victim's token as
        # routing id; its hello opens its own session under the victim's token as routing id.
        attacker = agent.client(public=public, secret=secret, routing_id=bytes.fromhex(victim.session), hello=False)
        assert attacker.request("hello", session=attacker.session)["ok"]
        stolen = attacker.request("stats", session=victim.session)
        assert stolen["e"]["code"] == "no_session", stolen
        reply = victim.wait_reply(secret_call, timeout=10)
        assert reply["ok"], reply
        assert victim.output() == b"SECRET-DATA-OF-VICTIM\n"
        assert victim.ok("stats")["objects"] >= 1  # later calls of the victim work: its route is its own
        # Nothing of the victim's reached the attacker.
        leaked = []
        while (message := attacker.receive(timeout=0.5)) is not None:
            leaked.append(message)
        assert not leaked, leaked
        victim.close(), attacker.close()
    finally:
        agent.stop()


def test_issue_10_a_request_naming_another_keys_session_gets_no_session_and_changes_nothing(tmp_path):
    public, secret = zmq.curve_keypair()
    agent = Agent(tmp_path / "a", authorized=[public.decode()])
    try:
        owner = agent.client()
        fractions = owner.module("fractions")
        third = owner.value(fractions, 1, 3, path=["Fraction"])
        intruder = agent.client(public=public, secret=secret, session=owner.session, hello=False)
        for op, fields in (("repr", {"o": third.wire()}), ("release", {"ids": [third.oid]}), ("bye", {})):
            reply = intruder.request(op, **fields)
            assert reply["e"]["code"] == "no_session", reply
        assert intruder.request("ping")["ok"]  # the supervisor answers ping for anyone authorized
        # The owner's session, objects and route are untouched.
        assert owner.ok("repr", o=third.wire()) == "Fraction(1, 3)"
        assert owner.ok("stats")["objects"] >= 1
        intruder.close(), owner.close()
    finally:
        agent.stop()


def test_issue_10_sessions_per_client_key_are_limited(tmp_path):
    """SHALL refuse a hello past --max-sessions-per-key with too_many_sessions, and start no worker for it."""
    agent = Agent(tmp_path / "a", extra=["--max-sessions-per-key", "3"])
    try:
        clients = [agent.client() for _ in range(3)]
        workers = len(agent.workers())
        extra = agent.client(hello=False)
        refused = [extra.request("hello", session=extra.session + str(i)) for i in range(57)]
        for reply in refused:
            assert reply["e"]["code"] == "too_many_sessions", reply
        assert refused[0]["e"]["msg"] == (
            f"[splitbrain.too_many_sessions] key {agent.client_public.decode()} already has 3 sessions on "
            f"{os.uname().nodename}; close one (Slave.close()) or raise --max-sessions-per-key")
        assert len(agent.workers()) == workers
        # Closing one makes room again; resuming an open session is not a new one.
        assert clients[0].request("bye")["ok"]
        assert extra.request("hello", session=extra.session)["ok"]
        assert clients[1].request("hello", session=clients[1].session)["r"]["resumed"] is True
        for client in (*clients, extra):
            client.close()
    finally:
        agent.stop()


def test_issue_10_a_reply_whose_connection_is_gone_waits_until_its_client_is_back(agent):
    """SHALL keep a reply whose client connection is gone until the client sends again, on any
    connection of its key (issue 10, point 2): no reply is lost across a reconnect."""
    first = agent.client()
    time_ = first.module("time")
    call = next(first.ids)
    first.send({"id": call, "op": "call", "o": time_.wire(), "path": ["sleep"], "a": [0.5]})
    first.close()  # the connection goes before the reply is made
    agent.wait_for_log(r"its client is not reachable; holding its replies")
    again = agent.client(session=first.session, hello=False)
    assert again.request("ping")["ok"]  # any message naming the session brings the held replies
    reply = again.wait_reply(call, timeout=5)
    assert reply["ok"] and reply["r"] is None
    assert again.ok("stats")["objects"] >= 1
    again.close()


def test_an_idle_bye_is_answered_by_the_supervisor_and_the_worker_still_ends_in_order(agent):
    """A bye that says the client waits for nothing else ("idle") is answered at once, without the
    worker (here stopped): the client's close does not wait for it. The worker still gets the bye,
    ends by itself when it runs again, and the session ends with it. A bye without "idle" waits for
    the worker, as before."""
    idle, plain = agent.client(), agent.client()
    for c in (idle, plain):
        assert c.value(c.module("os"), path=("getpid",)) == c.info["pid"]  # the session has run a call
        os.kill(c.info["pid"], signal.SIGSTOP)
    try:
        assert idle.request("bye", idle=True, timeout=5.0)["ok"]
        bye = next(plain.ids)
        plain.send({"id": bye, "op": "bye"})
        with pytest.raises(AssertionError, match="no reply"):
            plain.wait_reply(bye, timeout=0.5)
    finally:
        for c in (idle, plain):
            os.kill(c.info["pid"], signal.SIGCONT)
    assert plain.wait_reply(bye)["ok"]
    agent.wait_for_log(rf"session {idle.session[:12]} closed by the client")
    wait_until(lambda: not os.path.exists(f"/proc/{idle.info['pid']}") or
               open(f"/proc/{idle.info['pid']}/stat").read().rsplit(")", 1)[1].split()[0] in "ZX",
               what="the idle session's worker to end")
    idle.close(), plain.close()
