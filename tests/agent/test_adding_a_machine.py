"""The short path to a real machine: `splitbrain key` prints the client's key, `splitbrain-agent
authorize KEY` lets it in without restarting the agent, the connection file holds an address a
client can reach (never a wildcard), and every command answers --version."""
import json
import os
import pathlib
import re
import subprocess
import sys

from deadline import wait_until

AGENT = pathlib.Path(os.environ["SPLITBRAIN_AGENT"])
PYTHON = sys.executable


def splitbrain_cli(*args, config):
    env = dict(os.environ, SPLITBRAIN_CONFIG=str(config))
    return subprocess.run([PYTHON, "-m", "splitbrain", *args], capture_output=True, text=True, timeout=60, env=env)


def serve(tmp_path, *extra):
    keys = tmp_path / "agent-keys"
    subprocess.run([str(AGENT), "keygen", str(keys)], check=True, capture_output=True)
    authorized = tmp_path / "authorized_keys"
    authorized.write_text("# nobody yet\n")
    connection = tmp_path / "connection.json"
    log = open(tmp_path / "agent.log", "wb")
    process = subprocess.Popen([str(AGENT), "serve", "--key", str(keys), "--authorized-keys", str(authorized),
                                "--connection-file", str(connection), *extra],
                               stdout=subprocess.DEVNULL, stderr=log)

    def written():
        assert process.poll() is None, (tmp_path / "agent.log").read_text()
        try:
            return json.loads(connection.read_text())
        except (FileNotFoundError, ValueError):
            return None
    return process, authorized, connection, wait_until(written, 10, "the connection file")


def stop(process):
    process.terminate()
    process.wait(10)


def test_version_on_every_command():
    agent = subprocess.run([str(AGENT), "--version"], capture_output=True, text=True, timeout=10)
    assert agent.returncode == 0 and re.fullmatch(r"splitbrain-agent \d+\.\d+\.\d+\n", agent.stdout)
    cli = subprocess.run([PYTHON, "-m", "splitbrain", "--version"], capture_output=True, text=True, timeout=30)
    assert cli.returncode == 0 and re.fullmatch(r"splitbrain \d+\.\d+\.\d+\n", cli.stdout)


def test_splitbrain_key_creates_the_client_key_once_and_prints_it(tmp_path):
    config = tmp_path / "config"
    first = splitbrain_cli("key", "-q", config=config)
    assert first.returncode == 0, first.stderr
    public = first.stdout.strip()
    assert len(public) == 40
    assert (config / "client.pub").read_text().strip() == public
    again = splitbrain_cli("key", config=config)
    assert again.stdout.strip() == public  # the same pair, not a new one
    assert f"splitbrain-agent authorize {public}" in again.stderr


def test_a_key_authorized_while_the_agent_runs_is_let_in_without_a_restart(tmp_path):
    process, authorized, connection, _ = serve(tmp_path, "--listen", "tcp://127.0.0.1:0")
    try:
        config = tmp_path / "config"
        public = splitbrain_cli("key", "-q", config=config).stdout.strip()
        probe = ("import splitbrain, sys\n"
                 "try:\n"
                 f"    box = splitbrain.connect({str(connection)!r}, timeout=2)\n"
                 "except splitbrain.KeyRefused as e:\n"
                 "    print('refused', e.code); sys.exit(3)\n"
                 "print('cwd', box.modules.os.getcwd())\n")
        env = dict(os.environ, SPLITBRAIN_CONFIG=str(config))
        refused = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
        assert refused.returncode == 3 and "refused key_refused" in refused.stdout, refused.stdout + refused.stderr

        added = subprocess.run([str(AGENT), "authorize", public, "--authorized-keys", str(authorized),
                                "--comment", "alice@lab-pc"], capture_output=True, text=True, timeout=10)
        assert added.returncode == 0, added.stderr
        assert f"{public}  # alice@lab-pc" in authorized.read_text()
        twice = subprocess.run([str(AGENT), "authorize", public, "--authorized-keys", str(authorized)],
                               capture_output=True, text=True, timeout=10)
        assert "is already in" in twice.stdout and authorized.read_text().count(public) == 1

        let_in = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
        assert let_in.returncode == 0 and let_in.stdout.startswith("cwd /"), let_in.stdout + let_in.stderr
        assert "authorized keys (was 0)" in (tmp_path / "agent.log").read_text()
    finally:
        stop(process)


def test_authorize_refuses_what_is_not_a_key(tmp_path):
    result = subprocess.run([str(AGENT), "authorize", "not-a-key", "--authorized-keys", str(tmp_path / "ak")],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "'not-a-key' is not a 40-character Z85 CurveZMQ public key" in result.stderr
    assert not (tmp_path / "ak").exists()


def test_a_wildcard_listen_address_is_never_written_into_the_connection_file(tmp_path):
    process, _, _, info = serve(tmp_path, "--listen", "tcp://0.0.0.0:0")
    try:
        host, port = re.fullmatch(r"tcp://(.+):(\d+)", info["address"]).groups()
        assert host not in {"0.0.0.0", "*", "::", "[::]"} and int(port) > 0
        assert "written to the connection file" in (tmp_path / "agent.log").read_text()
    finally:
        stop(process)


def test_advertise_names_the_address_clients_use(tmp_path):
    process, _, _, info = serve(tmp_path, "--listen", "tcp://127.0.0.1:0", "--advertise", "tcp://bench-3.lab:7780")
    try:
        assert info["address"] == "tcp://bench-3.lab:7780"
    finally:
        stop(process)
