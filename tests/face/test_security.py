"""CurveZMQ from the client's side: a client whose key the agent does not accept gets nothing and an
error that says where to look; plain text only when the connection says `public_key: null`."""

import json
import os
import subprocess
import sys
import time

import pytest

import splitbrain
from conftest import wait_until


@pytest.fixture
def agent(tmp_path):
    """Starts splitbrain-agent serve with the given extra flags; yields a starter function."""
    processes = []

    def start(*flags):
        connection_file = tmp_path / f"connection-{len(processes)}.json"
        command = [os.environ["SPLITBRAIN_AGENT"], "serve", "--listen", "tcp://127.0.0.1:*",
                   "--connection-file", str(connection_file), *flags]
        if sys.prefix != sys.base_prefix:
            command += ["--python", sys.prefix]
        with splitbrain.local():
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        processes.append(process)
        wait_until(lambda: connection_file.exists() or process.poll() is not None, timeout=10,
                 what="the agent's connection file")
        assert process.poll() is None, process.stderr.read()
        return connection_file, process

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def test_a_client_whose_key_the_agent_refuses_is_told_so_at_once(agent, tmp_path):
    keys = tmp_path / "keys"
    subprocess.run([os.environ["SPLITBRAIN_AGENT"], "keygen", str(keys)], check=True)
    someone_else, _ = splitbrain._core.curve_keypair()
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(someone_else + "\n")
    connection_file, process = agent("--key", str(keys), "--authorized-keys", str(authorized))
    start = time.monotonic()
    with pytest.raises(splitbrain.KeyRefused) as caught:
        splitbrain.connect(str(connection_file), name="refusing")
    assert time.monotonic() - start < 2  # the handshake's answer, not the 5 s liveness timeout
    our_key, _ = splitbrain.client_keys()
    assert str(caught.value).startswith("[splitbrain.key_refused] refusing (tcp://127.0.0.1:")
    assert str(caught.value).endswith(f") refused this client's key {our_key}; add it to the agent's "
                                      "--authorized-keys file")
    assert isinstance(caught.value, splitbrain.AgentUnreachable)
    assert "refusing" not in splitbrain.known_slaves()


def test_a_loopback_insecure_agent_is_reached_in_plain_text(agent):
    connection_file, _ = agent("--insecure")
    info = json.loads(connection_file.read_text())
    assert info["public_key"] is None
    box = splitbrain.connect(str(connection_file), name="plain")
    try:
        assert box.modules.os.getpid() == box.pid
        assert box.public_key is None
    finally:
        box.close()
