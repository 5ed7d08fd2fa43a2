"""Issue 4 point 1: connect, spawn, Slave, the registry of named slaves and the client's keys."""

import json
import os
import stat
import sys

import pytest

import splitbrain


def test_a_spawned_slave_knows_its_name_address_platform_and_python(linux_box):
    assert linux_box.name == "linux-box"
    assert linux_box.address.startswith("tcp://127.0.0.1:")
    assert linux_box.platform == sys.platform
    assert linux_box.python.split()[0] == sys.version.split()[0]
    assert linux_box.state == "connected"
    assert repr(linux_box).startswith("<splitbrain.Slave linux-box tcp://127.0.0.1:")


def test_ping_measures_a_round_trip_in_seconds(linux_box):
    latency = linux_box.ping()
    assert 0 < latency < 1
    assert linux_box.latency == latency


def test_modules_gives_explicit_access_whatever_the_context(linux_box):
    remote_pid = linux_box.modules.os.getpid()
    assert remote_pid != os.getpid()
    assert remote_pid == linux_box.pid
    assert linux_box.modules["os.path"].basename("/a/b") == "b"
    with splitbrain.local():
        assert linux_box.modules.os.getpid() == remote_pid


def test_the_client_key_pair_is_made_on_first_use_with_a_private_secret(linux_box):
    public, secret = splitbrain.client_keys()
    directory = splitbrain.config_dir()
    secret_file = os.path.join(directory, "client.key")
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    with open(os.path.join(directory, "client.pub")) as f:
        assert f.read().strip() == public
    assert splitbrain.client_keys() == (public, secret)


def test_connect_takes_a_connection_file_and_a_name(linux_box, tmp_path):
    connection_file = tmp_path / "bench.json"
    connection_file.write_text(json.dumps({"address": linux_box.address, "public_key": linux_box.public_key}))
    box = splitbrain.connect(str(connection_file), name="bench-a")
    try:
        assert box.name == "bench-a"
        assert box.modules.os.getpid() != os.getpid()
        assert splitbrain.slave("bench-a") is box
    finally:
        box.close()


def test_a_connection_file_without_a_name_names_the_slave_after_the_file(linux_box, tmp_path):
    connection_file = tmp_path / "bench-b.json"
    connection_file.write_text(json.dumps({"address": linux_box.address, "public_key": linux_box.public_key}))
    box = splitbrain.connect(str(connection_file))
    try:
        assert box.name == "bench-b"
    finally:
        box.close()


def test_connect_takes_an_address_with_the_agent_key(linux_box):
    box = splitbrain.connect(f"{linux_box.address}?key={linux_box.public_key}", name="by-address")
    try:
        assert box.ping() > 0
    finally:
        box.close()


def test_an_address_without_a_known_key_is_refused_with_advice():
    with pytest.raises(ValueError, match=r"\[splitbrain\.unknown_agent_key\] no public key for tcp://127\.0\.0\.1:9"):
        splitbrain.connect("tcp://127.0.0.1:9")


def test_a_saved_slave_is_found_by_name_in_the_registry_and_forgotten(linux_box):
    box = splitbrain.connect(f"{linux_box.address}?key={linux_box.public_key}", name="saved-box", save=True)
    box.close()
    with open(os.path.join(splitbrain.config_dir(), "slaves.json")) as f:
        entry = json.load(f)["slaves"]["saved-box"]
    assert entry == {"address": linux_box.address, "public_key": linux_box.public_key}
    assert "saved-box" in splitbrain.known_slaves()
    again = splitbrain.slave("saved-box")  # connects from the registry
    try:
        assert again.name == "saved-box" and again.ping() > 0
        assert any(row["name"] == "saved-box" and row["state"] == "connected" for row in splitbrain.slaves())
    finally:
        splitbrain.forget("saved-box")
    assert again.closed
    assert "saved-box" not in splitbrain.known_slaves()


def test_an_unknown_name_raises_lookup_error_naming_it():
    with pytest.raises(LookupError, match=r"\[splitbrain\.unknown_slave\] 'no-such-box'"):
        splitbrain.connect("no-such-box")
    with pytest.raises(LookupError, match=r"\[splitbrain\.unknown_slave\]"):
        splitbrain.slave("no-such-box")


def test_issue_12_an_unknown_name_says_how_to_add_it():
    # SHALL say what to do: the README's connect("linux-box") before `splitbrain add` was run
    with pytest.raises(LookupError) as caught:
        splitbrain.connect("linux-box")
    assert "add it with `splitbrain add linux-box connection.json`" in str(caught.value)


def test_slaves_lists_name_address_platform_python_latency_and_state(linux_box):
    rows = {row["name"]: row for row in splitbrain.slaves()}
    row = rows["linux-box"]
    assert row["address"] == linux_box.address
    assert row["platform"] == sys.platform
    assert row["python"] == sys.version.split()[0]
    assert row["latency"] > 0
    assert row["state"] == "connected"


def test_a_closed_slave_refuses_work_and_its_spawned_agent_stops():
    box = splitbrain.spawn("short-lived")
    process = box._agent.process
    box.close()
    assert box.closed and box.state == "closed"
    assert process.poll() is not None
    with pytest.raises(splitbrain.SlaveClosed, match=r"\[splitbrain\.closed\]"):
        with box:
            pass
    with pytest.raises(splitbrain.SlaveClosed, match=r"\[splitbrain\.closed\]"):
        box.modules.os.getcwd()
    box.close()  # idempotent


def test_a_spawned_agent_ends_when_its_interpreter_is_killed(tmp_path):
    """SHALL not outlive the interpreter that spawned it, even one killed with SIGKILL."""
    import signal
    import subprocess
    import time

    script = ("import os, splitbrain\n"
              "box = splitbrain.spawn('orphan-check')\n"
              "print(box._agent.process.pid, box.modules.os.getpid(), flush=True)\n"
              "import time; time.sleep(60)\n")
    master = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, SPLITBRAIN_CONFIG=str(tmp_path)))
    try:
        agent_pid, worker_pid = map(int, master.stdout.readline().split())
    finally:
        master.send_signal(signal.SIGKILL)
        master.wait()

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split()[2] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 5
    while (alive(agent_pid) or alive(worker_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(agent_pid), "the agent outlived its killed interpreter"
    assert not alive(worker_pid), "the agent's worker outlived its killed interpreter"


def test_the_public_api_has_docstrings():
    for name in splitbrain.__all__:
        assert getattr(splitbrain, name).__doc__, name
    for name, member in vars(splitbrain.Slave).items():
        if not name.startswith("_"):
            assert member.__doc__, f"Slave.{name}"


def test_without_splitbrain_config_the_registry_lives_in_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SPLITBRAIN_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert splitbrain.config_dir() == str(tmp_path / "xdg" / "splitbrain")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert splitbrain.config_dir() == str(tmp_path / "home" / ".config" / "splitbrain")
