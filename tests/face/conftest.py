"""Fixtures for the splitbrain Python face: real agents spawned from the build tree.

Environment (set by tests/CMakeLists.txt): PYTHONPATH=<build>/python, SPLITBRAIN_AGENT=<build>/agent/
splitbrain-agent, JUPYTER_PATH=<build>/share/jupyter. Each session gets its own SPLITBRAIN_CONFIG,
so the user's ~/.config/splitbrain is never touched.
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: helpers every suite shares
from deadline import wait_until  # noqa: E402,F401  (the suite's tests import it from here)
from machinery import PACKAGES  # noqa: E402

_config = tempfile.mkdtemp(prefix="splitbrain-face-config-")
os.environ["SPLITBRAIN_CONFIG"] = _config

import splitbrain  # noqa: E402  (after SPLITBRAIN_CONFIG is set)
import splitbrain._routing  # noqa: E402

splitbrain._routing.exempt(*PACKAGES)


@pytest.fixture(scope="session")
def linux_box():
    box = splitbrain.spawn("linux-box")
    yield box
    box.close()


@pytest.fixture(scope="session")
def windows_box():
    box = splitbrain.spawn("windows-box")
    yield box
    box.close()


@pytest.fixture
def fresh_box():
    """A slave of its own, for tests that kill, interrupt or count objects."""
    box = splitbrain.spawn()
    yield box
    box.close()


@pytest.fixture(params=["relay", "direct"])
def either_box(request, monkeypatch):
    """A slave of its own whose calls go through the agent's relay (client, supervisor, worker) or
    the direct connection to the session's worker (docs/protocol.md, "The direct connection")."""
    direct = request.param == "direct"
    monkeypatch.setenv("SPLITBRAIN_DIRECT", "1" if direct else "0")
    box = splitbrain.spawn()
    try:
        if direct:
            wait_until(lambda: box.modules.os.getpid() and box._conn.direct, 10, "the direct connection")
        else:
            assert box.modules.os.getpid() and not box._conn.direct
        yield box
    finally:
        box.close()


def run_python(code, timeout=60, env=None, args=(), **kwargs):
    """Runs *code* in a fresh interpreter of this venv with the test environment (*args* in
    sys.argv[1:]); returns the CompletedProcess (text, stdout and stderr captured)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, **kwargs)
