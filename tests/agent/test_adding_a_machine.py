"""The short path to a real machine: `splitbrain key` prints the client's key, `splitbrain-agent
authorize KEY` lets it in without restarting the agent, the connection file holds an address a
client can reach (never a wildcard), and every command answers --version."""
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest
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


def installed_commands():
    """The programs `cmake --install` put into bin/ (build/install_manifest.txt, written by set-up)."""
    manifest = pathlib.Path(os.environ["SPLITBRAIN_BUILD_DIR"]) / "install_manifest.txt"
    return sorted(pathlib.Path(line) for line in manifest.read_text().split()
                  if pathlib.Path(line).parent.name == "bin" and os.access(line, os.X_OK))


def test_version_on_every_command():
    commands = installed_commands()
    # SHALL cover every command a user gets, the three programs at least
    assert {"splitbrain-agent", "splitbrain-worker", "splitbrain-kernel"} <= {c.name for c in commands}, commands
    for command in [*commands, AGENT]:
        done = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{command} --version: {done.returncode} {done.stderr}"
        assert re.fullmatch(rf"{re.escape(command.name)} \d+\.\d+\.\d+\n", done.stdout), (command, done.stdout)
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


README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_blocks(section, language):
    """The fenced `language` blocks of README's `section`, each as a list of commands (backslash
    continuations joined)."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"```{language}\n(.*?)```", body, re.DOTALL)
    return [block.replace("\\\n", " ").strip().splitlines() for block in blocks]


class Namespace:
    """A second host: a network namespace joined to this one by a veth pair (10.251.N.0/30)."""

    def __init__(self):
        tag = f"{os.getpid() % 10000:04d}"
        self.name, self.host_if, self.ns_if = f"sb-readme-{tag}", f"sbh{tag}", f"sbn{tag}"
        net = 1 + os.getpid() % 250
        self.host_ip, self.ns_ip = f"10.251.{net}.1", f"10.251.{net}.2"
        for command in (["ip", "netns", "add", self.name],
                        ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
                        ["ip", "link", "set", self.ns_if, "netns", self.name],
                        ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if],
                        ["ip", "link", "set", self.host_if, "up"],
                        ["ip", "netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if],
                        ["ip", "netns", "exec", self.name, "ip", "link", "set", self.ns_if, "up"],
                        ["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"]):
            subprocess.run(command, check=True, capture_output=True, timeout=10)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)


def test_the_readme_recipe_for_a_real_machine_works_verbatim(tmp_path):
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 for a network namespace as the second host")
    key_step, slave_steps, add_step = readme_blocks("Adding a real machine", "sh")
    (python_example,) = ["\n".join(b) for b in readme_blocks("In plain Python", "python")]
    assert key_step == ["splitbrain key"] and add_step == ["splitbrain add linux-box connection.json"]
    assert [c.split()[1] for c in slave_steps] == ["keygen", "authorize", "serve"]

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "splitbrain-agent").symlink_to(AGENT)
    wrapper = bin_dir / "splitbrain"
    wrapper.write_text(f'#!/bin/sh\nexec {PYTHON} -m splitbrain "$@"\n')
    wrapper.chmod(0o755)
    notebook_home, slave_home = tmp_path / "notebook", tmp_path / "slave"
    notebook_home.mkdir()
    slave_home.mkdir()

    def env(home):
        clean = {k: v for k, v in os.environ.items() if k not in {"SPLITBRAIN_CONFIG", "XDG_CONFIG_HOME"}}
        return dict(clean, HOME=str(home), PATH=f"{bin_dir}:{os.environ['PATH']}")

    def on_notebook(command):
        done = subprocess.run(command, shell=True, cwd=notebook_home, env=env(notebook_home),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        return done.stdout

    host = Namespace()
    agent = None
    try:
        client_key = on_notebook(key_step[0]).strip()
        assert len(client_key) == 40
        *setup, serve_command = [c.replace("CLIENT-KEY", f"'{client_key}'") for c in slave_steps]
        in_slave = ["ip", "netns", "exec", host.name, "sh", "-c"]
        for command in setup:
            done = subprocess.run(in_slave + [command], cwd=slave_home, env=env(slave_home),
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        log = open(tmp_path / "agent.log", "wb")
        agent = subprocess.Popen(in_slave + ["exec " + serve_command], cwd=slave_home, env=env(slave_home),
                                 stdout=log, stderr=log)
        connection = slave_home / ".splitbrain" / "connection.json"
        info = wait_until(lambda: agent.poll() is None and connection.exists() and json.loads(connection.read_text()),
                          20, "the agent's connection file in the namespace")
        assert info["address"] == f"tcp://{host.ns_ip}:7780"  # what the notebook machine can reach
        (notebook_home / "connection.json").write_text(connection.read_text())

        assert "linux-box: tcp://" in on_notebook(add_step[0])

        check = f"""
{python_example}
with splitbrain.connect("linux-box") as box:
    devices = open("/proc/net/dev").read()
    assert "{host.ns_if}" in devices and "{host.host_if}" not in devices, devices
print("recipe ok")
"""
        assert "recipe ok" in on_notebook(f"{PYTHON} -c {shlex.quote(check)}")
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        host.close()



def test_issue_12_a_key_that_starts_with_a_dash_is_a_key_not_an_option(tmp_path):
    # Z85's alphabet has '-': one client key in 85 starts with it (the README recipe met one).
    import zmq
    public = next(p.decode() for p, _ in iter(zmq.curve_keypair, None) if p.startswith(b"-"))
    added = subprocess.run([str(AGENT), "authorize", public, "--authorized-keys", str(tmp_path / "ak")],
                           capture_output=True, text=True, timeout=10)
    assert added.returncode == 0, added.stderr
    assert (tmp_path / "ak").read_text() == public + "\n"
    unknown = subprocess.run([str(AGENT), "authorize", "--bogus", "--authorized-keys", str(tmp_path / "ak")],
                             capture_output=True, text=True, timeout=10)
    assert unknown.returncode == 2 and "unexpected argument '--bogus' to authorize" in unknown.stderr
