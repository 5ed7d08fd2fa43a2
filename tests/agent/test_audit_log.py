"""The agent's audit log (--audit-log): one JSON line per request, appended off the request path,
naming the key by its comment and the target by what the session imported, the arguments only by
digest; rotated by size; printed by `splitbrain-agent audit`."""
import json
import subprocess

import pytest

from conftest import AGENT, Agent, Key, wait_until


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def audited(tmp_path):
    key = Key(comment="alice@lab-pc")
    log = tmp_path / "audit.log"
    agent = Agent(tmp_path / "agent", authorized=[key.line], extra=["--audit-log", str(log)])
    client = key.client(agent)
    yield agent, client, log
    client.close()
    agent.stop()


def test_each_request_is_one_line_with_its_key_target_digest_outcome_and_duration(audited):
    """SHALL write one line per request: time, key comment, session, op, target, digest, outcome, ms."""
    agent, client, log = audited
    os_ = client.module("os")
    secret_path = "/nonexistent/splitbrain-audit-secret-name"
    reply = client.call(os_, secret_path, path=["remove"])
    assert not reply["ok"]
    assert client.value(os_, path=["getcwd"])
    entries = wait_until(lambda: len(lines(log)) >= 4 and lines(log), 10, "four audit lines")
    hello, imported, remove, getcwd = entries[:4]
    assert hello["op"] == "hello" and hello["outcome"] == "ok"
    assert imported["op"] == "import" and imported["target"] == "os"
    assert remove["op"] == "call" and remove["target"] == "os.remove"
    assert remove["outcome"] == "raised builtins.FileNotFoundError"
    assert remove["args"].startswith("sha256:") and len(remove["args"]) == len("sha256:") + 64
    assert getcwd["target"] == "os.getcwd" and getcwd["outcome"] == "ok" and getcwd["args"] != remove["args"]
    for entry in entries:
        assert entry["key"] == "alice@lab-pc"
        assert entry["session"] == client.session[:12]
        assert entry["time"].endswith("Z") and entry["ms"] >= 0
    assert secret_path not in log.read_text()  # the arguments themselves are never written
    # The same arguments give the same digest, so a reader can tell repeats apart without them.
    client.call(os_, secret_path, path=["remove"])
    again = wait_until(lambda: len(lines(log)) >= 5 and lines(log)[4], 10, "a fifth audit line")
    assert again["args"] == remove["args"]


def test_a_refused_request_is_logged_with_its_error_id(audited):
    """SHALL log a request the supervisor refuses, with the error id as its outcome."""
    agent, client, log = audited
    client.send({"id": 99, "op": "import", "name": "os", "session": "not-a-session"})
    assert client.wait_reply(99)["e"]["code"] == "no_session"
    refused = wait_until(lambda: [e for e in lines(log) if e["outcome"] == "no_session"], 10, "the refusal's line")
    assert refused[0]["op"] == "import" and refused[0]["key"] == "alice@lab-pc"


def test_the_log_is_rotated_by_size_keeping_k_files(tmp_path):
    """SHALL rotate PATH past --audit-max-bytes into PATH.1 ... PATH.K, and keep no more."""
    key = Key(comment="ci@runner")
    log = tmp_path / "audit.log"
    agent = Agent(tmp_path / "agent", authorized=[key.line],
                  extra=["--audit-log", str(log), "--audit-max-bytes", "4000", "--audit-keep", "2"])
    try:
        client = key.client(agent)
        os_ = client.module("os")
        for _ in range(120):
            client.value(os_, path=["getpid"])
        wait_until(lambda: (tmp_path / "audit.log.2").exists(), 10, "audit.log.2")
        assert not (tmp_path / "audit.log.3").exists()
        for path in (log, tmp_path / "audit.log.1", tmp_path / "audit.log.2"):
            assert all(entry["op"] in ("hello", "import", "call") for entry in lines(path)), path
        assert (tmp_path / "audit.log.1").stat().st_size <= 4000
        client.close()
    finally:
        agent.stop()


def test_the_audit_command_prints_a_table_or_json_lines(audited):
    """SHALL print the log as a table, or as JSON lines with --json, limited by --since."""
    agent, client, log = audited
    client.value(client.module("os"), path=["getcwd"])
    wait_until(lambda: len(lines(log)) >= 3, 10, "three audit lines")
    table = subprocess.run([str(AGENT), "audit", "--audit-log", str(log), "--since", "1h"], capture_output=True,
                           text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["TIME", "KEY", "SESSION", "OP", "TARGET", "OUTCOME", "MS"]
    assert any("alice@lab-pc" in row and "os.getcwd" in row and " ok " in row for row in rows), table.stdout
    as_json = subprocess.run([str(AGENT), "audit", "--audit-log", str(log), "--json"], capture_output=True,
                             text=True, timeout=30)
    assert [json.loads(line)["op"] for line in as_json.stdout.splitlines()][:3] == ["hello", "import", "call"]

    # --since leaves out what is older: an entry of 2020 put at the head of the file.
    old = dict(lines(log)[0], time="2020-01-31T10:00:00.000Z", target="from-2020")
    log.write_text(json.dumps(old) + "\n" + log.read_text())
    everything = subprocess.run([str(AGENT), "audit", "--audit-log", str(log), "--json"], capture_output=True,
                                text=True, timeout=30)
    assert "from-2020" in everything.stdout
    recent = subprocess.run([str(AGENT), "audit", "--audit-log", str(log), "--since", "1h", "--json"],
                            capture_output=True, text=True, timeout=30)
    assert recent.returncode == 0 and "from-2020" not in recent.stdout and "os.getcwd" in recent.stdout
    bad = subprocess.run([str(AGENT), "audit", "--audit-log", str(log), "--since", "soon"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "--since needs a duration" in bad.stderr
