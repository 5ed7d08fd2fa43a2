"""The splitbrain-agent command line: keygen, --help, bad flags, --insecure, refused keys."""
import json
import re
import stat
import subprocess
import time

import zmq

from conftest import AGENT, Agent


def run(*args, timeout=10):
    return subprocess.run([str(AGENT), *args], capture_output=True, text=True, timeout=timeout)


def test_keygen_writes_a_private_secret_key_and_a_public_key(tmp_path):
    result = run("keygen", str(tmp_path / "keys"))
    assert result.returncode == 0, result.stderr
    secret = tmp_path / "keys" / "agent.key"
    public = tmp_path / "keys" / "agent.pub"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    public_key = public.read_text().strip()
    assert len(public_key) == 40
    assert public_key in result.stdout
    secret_key = [line for line in secret.read_text().splitlines() if not line.startswith("#")][0]
    assert zmq.curve_public(secret_key.encode()).decode() == public_key


def test_keygen_refuses_to_overwrite(tmp_path):
    assert run("keygen", str(tmp_path)).returncode == 0
    before = (tmp_path / "agent.key").read_bytes()
    result = run("keygen", str(tmp_path))
    assert result.returncode == 1
    assert "already exists; refusing to overwrite it" in result.stderr
    assert (tmp_path / "agent.key").read_bytes() == before


def test_help_documents_every_option():
    result = run("--help")
    assert result.returncode == 0
    for option in ["keygen", "serve", "--listen", "--key", "--authorized-keys", "--connection-file", "--python",
                   "--insecure", "--grace", "--max-message", "--worker", "--exit-with"]:
        assert option in result.stdout, option


def test_bad_usage_exits_2_with_a_clear_message(tmp_path):
    cases = {
        (): "a command is needed",
        ("frobnicate",): "unknown command 'frobnicate'",
        ("serve", "--bogus"): "unknown option '--bogus'",
        ("serve", "--listen"): "--listen needs a value",
        ("serve", "--insecure", "--listen", "tcp://127.0.0.1:0", "--grace", "soon"): "--grace needs a positive number",
        ("serve", "--authorized-keys", "x"): "serve needs --key DIR",
        ("keygen",): "keygen takes exactly one argument",
    }
    for args, message in cases.items():
        result = run(*args)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert "Try 'splitbrain-agent --help'." in result.stderr


def test_a_python_that_does_not_exist_is_refused(tmp_path):
    result = run("serve", "--insecure", "--listen", "tcp://127.0.0.1:0", "--python", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "is neither a virtual environment directory nor an executable interpreter" in result.stderr


def test_the_workers_see_the_python_environment_given(tmp_path):
    agent = Agent(tmp_path / "a", extra=["--python", "/usr/bin/python3"])
    try:
        client = agent.client()
        sys_ = client.module("sys")
        assert client.ok("getattr", o=sys_.wire(), name="prefix") == "/usr"
        assert client.info["executable"] == "/usr/bin/python3"
        client.close()
    finally:
        agent.stop()
    agent = Agent(tmp_path / "b")
    try:
        client = agent.client()
        prefix = client.ok("getattr", o=client.module("sys").wire(), name="prefix")
        assert prefix.endswith(".venv"), prefix  # the configured SPLITBRAIN_VENV by default
        client.close()
    finally:
        agent.stop()


def test_insecure_is_refused_off_loopback():
    result = run("serve", "--insecure", "--listen", "tcp://0.0.0.0:0")
    assert result.returncode == 2
    assert "--insecure is only allowed on a loopback address" in result.stderr


def test_insecure_on_loopback_serves_without_keys(tmp_path):
    agent = Agent(tmp_path / "a", insecure=True)
    try:
        assert agent.public_key is None
        assert json.loads(agent.connection_file.read_text()) == {"address": agent.address, "public_key": None}
        client = agent.client()
        assert client.value(client.module("os"), path=["getpid"]) == client.info["pid"]
        client.close()
    finally:
        agent.stop()


def test_the_connection_file_names_the_real_port_and_no_secret(agent):
    info = json.loads(agent.connection_file.read_text())
    assert info["address"].startswith("tcp://127.0.0.1:") and not info["address"].endswith(":0")
    secret = (agent.key_dir / "agent.key").read_text()
    assert info["public_key"] == (agent.key_dir / "agent.pub").read_text().strip()
    assert info["public_key"] not in secret
    assert oct(agent.connection_file.stat().st_mode & 0o777) == "0o644"


def test_a_malformed_authorized_keys_file_is_named_with_its_line(tmp_path):
    assert run("keygen", str(tmp_path / "k")).returncode == 0
    keys = tmp_path / "clients"
    keys.write_text("# fine\nnot a key\n")
    result = run("serve", "--listen", "tcp://127.0.0.1:0", "--key", str(tmp_path / "k"), "--authorized-keys", str(keys))
    assert result.returncode == 1
    assert f"{keys}:2: not a Z85 CURVE public key" in result.stderr


def test_an_unknown_client_key_is_refused_logged_and_nothing_runs(agent, tmp_path):
    public, secret = zmq.curve_keypair()
    stranger = agent.client(public=public, secret=secret, hello=False)
    marker = tmp_path / "should-not-exist"
    stranger.send({"id": 1, "op": "hello", "session": stranger.session})
    stranger.send({"id": 2, "op": "import", "name": "os"})
    stranger.send({"id": 3, "op": "call", "o": {"$r": 1}, "path": ["mkdir"], "a": [str(marker)]})
    assert stranger.receive(timeout=1.0) is None
    agent.wait_for_log("refused client key " + re.escape(public.decode()))
    assert "opened" not in agent.log()
    assert not marker.exists()
    time.sleep(0.5)  # the stranger's socket keeps retrying meanwhile
    assert agent.log().count("refused client key") == 1
    stranger.close()
    # The authorized client is unaffected.
    friend = agent.client()
    assert friend.request("ping")["ok"]
    friend.close()


def test_a_client_pinning_the_wrong_agent_key_gets_nothing(agent):
    wrong_server_public, _ = zmq.curve_keypair()
    client = agent.client(hello=False)
    client.socket.close(0)
    client.socket = zmq.Context.instance().socket(zmq.DEALER)
    client.socket.setsockopt(zmq.LINGER, 0)
    client.socket.curve_serverkey = wrong_server_public
    client.socket.curve_publickey = agent.client_public
    client.socket.curve_secretkey = agent.client_secret
    client.socket.connect(agent.address)
    client.send({"id": 1, "op": "ping"})
    assert client.receive(timeout=1.0) is None
    client.close()


def test_the_worker_refuses_to_run_standalone():
    worker = AGENT.parent / "splitbrain-worker"
    result = subprocess.run([str(worker)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "started by splitbrain-agent only" in result.stderr


def test_the_supervisor_does_not_link_python():
    libraries = subprocess.run(["ldd", str(AGENT)], capture_output=True, text=True).stdout
    assert "libpython" not in libraries
    assert "libpython3.11" in subprocess.run(["ldd", str(AGENT.parent / "splitbrain-worker")],
                                             capture_output=True, text=True).stdout
