"""Per-key limits: the SSH-style options before a key in the agent's authorized_keys (from=,
expires=, max-sessions=, allow-modules=, deny-modules=), enforced by a real agent over real
sockets, read again when the file changes, each refusal logged with the key's comment."""
import os

import pytest

from conftest import Agent, Key

HOST = os.uname().nodename


@pytest.fixture
def make_agent(tmp_path):
    agents = []

    def make(*keys, extra=()):
        agents.append(Agent(tmp_path / f"agent{len(agents)}", authorized=[k.line for k in keys], extra=extra))
        return agents[-1]

    yield make
    for a in agents:
        a.stop()


def hello(key, agent, session="s1"):
    client = key.client(agent, session=session, hello=False)
    return client, client.request("hello", session=session)


def test_from_refuses_a_peer_outside_its_networks_and_admits_one_inside(make_agent):
    """SHALL refuse a hello of a key whose from= does not cover the peer address, with key_limit."""
    outside, inside = Key('from="10.0.0.0/8"'), Key('from="192.168.0.0/16,127.0.0.0/8"', comment="bob@lab-pc")
    agent = make_agent(outside, inside)
    workers = len(agent.workers())
    client, reply = hello(outside, agent)
    assert not reply["ok"]
    assert reply["e"]["code"] == "key_limit"
    assert reply["e"]["msg"] == (
        f"[splitbrain.key_limit] key alice@lab-pc may connect to {HOST} only from 10.0.0.0/8 (its from= in "
        "authorized_keys), not from 127.0.0.1")
    agent.wait_for_log(r"refused a session of alice@lab-pc from 127\.0\.0\.1: key alice@lab-pc may connect")
    assert len(agent.workers()) == workers  # no worker was started for it
    client.close()
    client, reply = hello(inside, agent)
    assert reply["ok"], reply
    client.close()


def test_expires_refuses_a_key_past_its_date(make_agent):
    """SHALL refuse a hello of a key past its expires= date, and admit one before it."""
    expired, valid = Key('expires="2020-01-31"'), Key('expires="2999-12-31"', comment="bob@lab-pc")
    agent = make_agent(expired, valid)
    client, reply = hello(expired, agent)
    assert reply["e"]["code"] == "key_limit"
    assert reply["e"]["msg"] == (
        f"[splitbrain.key_limit] key alice@lab-pc expired on 2020-01-31 00:00 UTC (expires=\"2020-01-31\" in "
        f"{HOST}'s authorized_keys); ask the lab's admin to renew it")
    agent.wait_for_log(r"refused a session of alice@lab-pc from 127\.0\.0\.1: key alice@lab-pc expired")
    client.close()
    client, reply = hello(valid, agent)
    assert reply["ok"], reply
    client.close()


def test_max_sessions_limits_one_key_below_the_agents_flag(make_agent):
    """SHALL refuse a key's hello past its max-sessions=, while another key may open more."""
    limited, other = Key("max-sessions=1"), Key("", comment="bob@lab-pc")
    agent = make_agent(limited, other)
    first, reply = hello(limited, agent, "one")
    assert reply["ok"], reply
    second, reply = hello(limited, agent, "two")
    assert reply["e"]["code"] == "too_many_sessions"
    assert reply["e"]["msg"] == (
        f"[splitbrain.too_many_sessions] key alice@lab-pc already has 1 sessions on {HOST}; close one "
        "(Slave.close()) or raise its max-sessions=1 in authorized_keys")
    agent.wait_for_log(r"refused a session of alice@lab-pc from 127\.0\.0\.1: key alice@lab-pc already has 1")
    others = [hello(other, agent, f"b{i}") for i in range(2)]
    assert all(reply["ok"] for _, reply in others)
    # Closing the one session makes room again.
    assert first.request("bye")["ok"]
    second.session = "three"
    assert second.request("hello", session="three")["ok"]
    for client in (first, second, *(c for c, _ in others)):
        client.close()


def test_allow_modules_admits_only_the_named_modules_and_their_submodules(make_agent):
    """SHALL answer an import outside the key's allow-modules= with module_refused."""
    key = Key('allow-modules="os, serial"')
    agent = make_agent(key)
    client, reply = hello(key, agent)
    assert reply["ok"], reply
    assert client.request("import", name="os")["ok"]
    assert client.request("import", name="os.path")["ok"]
    refused = client.request("import", name="subprocess")
    assert refused["e"]["code"] == "module_refused"
    assert refused["e"]["msg"] == (
        "[splitbrain.module_refused] key alice@lab-pc may not use module subprocess on this agent; its "
        "allow-modules=\"os,serial\" in authorized_keys does not name it")
    # "os" covers os.path, not a module whose name only starts with it.
    assert client.request("import", name="ossaudiodev")["e"]["code"] == "module_refused"
    client.close()


def test_deny_modules_refuses_the_named_modules_by_import_and_in_box_run(make_agent):
    """SHALL answer an import, or a box.run module, of a denied module with module_refused."""
    key = Key('deny-modules="ctypes"')
    agent = make_agent(key)
    client, reply = hello(key, agent)
    refused = client.request("import", name="ctypes")
    assert refused["e"]["code"] == "module_refused"
    assert refused["e"]["msg"] == ("[splitbrain.module_refused] key alice@lab-pc may not use module ctypes on this "
                                   "agent (deny-modules= in its authorized_keys line)")
    assert client.request("import", name="ctypes.util")["e"]["code"] == "module_refused"
    run = client.request("run", src="def f():\n    return 1\n", name="f", mods={"$d": ["c", "ctypes"]})
    assert run["e"]["code"] == "module_refused"
    assert client.request("import", name="os")["ok"]
    client.close()


def test_a_hello_cannot_lift_its_own_limits(make_agent):
    """SHALL take a session's limits from authorized_keys only, whatever its hello carries."""
    key = Key('deny-modules="ctypes"')
    agent = make_agent(key)
    client = key.client(agent, session="s", hello=False)
    assert client.request("hello", session="s", limits={"who": "x", "allow": None, "deny": []})["ok"]
    assert client.request("import", name="ctypes")["e"]["code"] == "module_refused"
    client.close()


def test_the_file_is_read_again_when_it_changes(make_agent):
    """SHALL apply an edited authorized_keys line from the next hello on, without a restart."""
    key = Key()
    agent = make_agent(key)
    client, reply = hello(key, agent, "before")
    assert reply["ok"] and client.request("import", name="ctypes")["ok"]
    path = agent.workdir / "authorized_keys"
    text = path.read_text().replace(key.line, 'deny-modules="ctypes",expires="2020-01-01" ' + key.line)
    path.write_text(text)
    os.utime(path, ns=(1, 1))  # a new mtime even within the file system's timestamp granularity
    client.session = "after"
    reply = client.request("hello", session="after")
    assert reply["e"]["code"] == "key_limit", reply
    agent.wait_for_log(r"read .*authorized_keys again: 2 authorized keys")
    client.close()


def test_a_malformed_option_stops_the_agent_from_starting(tmp_path):
    """SHALL refuse to start with an authorized_keys line it cannot read, naming file and line."""
    key = Key('colour="red"')
    with pytest.raises(Exception):
        Agent(tmp_path / "a", authorized=[key.line])
    log = (tmp_path / "a" / "agent.log").read_text()
    assert "authorized_keys:3: unknown option \"colour=\"" in log, log
