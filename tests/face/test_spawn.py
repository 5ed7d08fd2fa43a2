"""splitbrain._spawn.Agent, the one launcher of a local agent (spawn(), scripts/demo_agents.py, the
benchmarks and the test fixtures): it runs, reports, stops and cleans up."""

import json
import tempfile

import pytest

import splitbrain
from splitbrain import _spawn


def test_an_agent_in_a_private_directory_serves_and_leaves_nothing_behind():
    client_public, _ = splitbrain.client_keys()
    with _spawn.Agent(authorized=[client_public]) as agent:
        workdir = agent.workdir
        assert workdir.parent == type(workdir)(tempfile.gettempdir())
        assert oct(workdir.stat().st_mode & 0o777) == "0o700"
        assert json.loads(agent.connection_file.read_text()) == {"address": agent.address,
                                                                 "public_key": agent.public_key}
        assert agent.public_key == (agent.key_dir / "agent.pub").read_text().strip()
        box = splitbrain.connect(str(agent.connection_file), name="launched")
        try:
            assert box.modules.os.getppid() == agent.process.pid
        finally:
            box.close()
    assert agent.process.poll() == 0  # SIGTERM: a clean exit
    assert not workdir.exists()


def test_a_directory_given_is_kept_with_its_keys_for_the_next_start(tmp_path):
    with _spawn.Agent(tmp_path / "kept", insecure=True) as plain:
        assert plain.public_key is None
    with _spawn.Agent(tmp_path / "kept") as first:
        key = first.public_key
    with _spawn.Agent(tmp_path / "kept") as second:
        assert second.public_key == key
        assert second.address != "" and second.connection_file.exists()
    assert (tmp_path / "kept" / "agent.log").exists()


def test_an_agent_that_cannot_start_is_a_spawn_error_quoting_its_log():
    with pytest.raises(splitbrain.SpawnError) as caught:
        _spawn.Agent(extra=["--no-such-flag"])
    assert caught.value.code == "spawn_failed"
    assert str(caught.value).startswith("[splitbrain.spawn_failed] the agent exited with 2:\n")
    assert "unknown option '--no-such-flag'" in str(caught.value)


def test_a_failing_start_in_a_directory_given_names_the_log_it_keeps(tmp_path):
    with pytest.raises(splitbrain.SpawnError) as caught:
        _spawn.Agent(tmp_path / "kept", extra=["--grace", "soon"])
    log = tmp_path / "kept" / "agent.log"
    assert str(caught.value).startswith(f"[splitbrain.spawn_failed] the agent exited with 2 (log: {log}):\n")
    assert log.read_text() in str(caught.value)

