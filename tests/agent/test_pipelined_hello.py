"""A client may send requests right behind its hello, without waiting for its reply (issue 11 point
4: the Python client's connect sends its first import so). Whatever the hello's fate, such a request
never runs without the session: behind a refused hello it gets the hello's own error, id and
message, not no_session; behind a hello that waits for the labgrid coordinator it waits too."""
import os
import socket

from conftest import Agent, Key

HOST = os.uname().nodename


def pipelined(client, *requests):
    """Sends hello and then *requests* ((op, fields) pairs) at once; their replies, in that order."""
    ids = []
    for op, fields in (("hello", {}), *requests):
        ids.append(len(ids) + 1)
        client.send({"id": ids[-1], "op": op, **fields})
    return [client.wait_reply(i, timeout=20.0) for i in ids]


def assert_refused_alike(replies, code):
    hello, *after = replies
    assert not hello["ok"] and hello["e"]["code"] == code, hello
    for reply in after:
        assert not reply["ok"], reply
        assert reply["e"] == hello["e"], (reply["e"], hello["e"])


def test_a_request_pipelined_behind_a_hello_runs_in_the_session_it_opens(tmp_path):
    agent = Agent(tmp_path / "agent")
    try:
        client = agent.client(hello=False)
        hello, imported, cwd = pipelined(client, ("import", {"name": "os"}), ("stats", {}))
        assert hello["ok"] and hello["r"]["pid"] > 0, hello
        assert imported["ok"] and "getcwd" in imported["r"]["callables"], imported
        assert cwd["ok"] and cwd["r"] == {"objects": 1}, cwd  # the module the import holds for us
        client.close()
    finally:
        agent.stop()


def test_behind_a_refused_hello_each_pipelined_request_gets_the_hellos_error(tmp_path):
    """SHALL answer requests pipelined behind a refused hello (too_many_sessions, key_limit, leased)
    with the hello's own error, and run none of them (no worker is taken for them)."""
    limited, expired = Key("max-sessions=1"), Key('expires="2020-01-31"', comment="bob@lab-pc")
    holder = Key("lease", comment="carol@lab-pc")
    agent = Agent(tmp_path / "agent", authorized=[limited.line, expired.line, holder.line])
    try:
        first = limited.client(agent)
        second = limited.client(agent, hello=False)
        replies = pipelined(second, ("import", {"name": "os"}), ("stats", {}))
        assert_refused_alike(replies, "too_many_sessions")
        assert replies[1]["e"]["msg"] == (
            f"[splitbrain.too_many_sessions] key alice@lab-pc already has 1 sessions on {HOST}; close one "
            "(Slave.close()) or raise its max-sessions=1 in authorized_keys")

        late = expired.client(agent, hello=False)
        replies = pipelined(late, ("import", {"name": "os"}))
        assert_refused_alike(replies, "key_limit")
        assert replies[1]["e"]["msg"].startswith("[splitbrain.key_limit] key bob@lab-pc expired on 2020-01-31")

        lessee = holder.client(agent)
        assert lessee.ok("lease")  # the whole slave
        first.ok("bye")
        first.close()
        shut_out = limited.client(agent, hello=False)
        replies = pipelined(shut_out, ("import", {"name": "os"}), ("leases", {}))
        assert_refused_alike(replies, "leased")
        assert replies[1]["e"]["msg"].startswith(f"[splitbrain.leased] {HOST} is leased by carol@lab-pc")
        assert agent.log().count("opened (worker pid") == 2, agent.log()  # first's and lessee's: none refused
        for c in (second, late, lessee, shut_out):
            c.close()
    finally:
        agent.stop()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_behind_a_hello_waiting_for_the_labgrid_coordinator_requests_wait_and_share_its_refusal(tmp_path):
    """SHALL hold requests pipelined behind a hello that waits for the coordinator, and answer them
    with its place_not_held when the coordinator does not answer in --labgrid-timeout."""
    user = Key('labgrid-user="alice"')
    agent = Agent(tmp_path / "agent", authorized=[user.line],
                  extra=["--labgrid-place", "bench-3", "--labgrid-coordinator", f"127.0.0.1:{_free_port()}",
                         "--labgrid-timeout", "1"])
    try:
        client = user.client(agent, hello=False)
        replies = pipelined(client, ("import", {"name": "os"}), ("stats", {}))
        assert_refused_alike(replies, "place_not_held")
        assert replies[2]["e"]["msg"].startswith(f"[splitbrain.place_not_held] {HOST} serves labgrid place bench-3 "
                                                 "only to its holder")
        client.close()
    finally:
        agent.stop()
