"""Headless runs fail fast and short (issue 12): a notebook whose slave is down, run by
`jupyter nbconvert --execute`, fails well within the liveness timeout with a one-paragraph message
and no ANSI codes; `%slaves --check` and `splitbrain check` probe every registry entry first."""

import datetime
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from splitbrain import _registry
from splitbrain._slave import DEFAULT_TIMEOUT

JUPYTER = os.path.join(os.path.dirname(sys.executable), "jupyter")


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def dead_registry(tmp_path, monkeypatch):
    """A registry with one entry, dead-box, pointing at a loopback port nobody listens on."""
    monkeypatch.setenv("SPLITBRAIN_CONFIG", str(tmp_path / "config"))
    public, _ = _registry.client_keys()  # any well-formed key: nothing answers to check it
    _registry.save("dead-box", f"tcp://127.0.0.1:{_closed_port()}", public)
    return dict(os.environ)


def _notebook(path, *sources):
    cells = [{"cell_type": "code", "execution_count": None, "id": f"cell-{i}", "metadata": {}, "outputs": [],
              "source": source} for i, source in enumerate(sources)]
    path.write_text(json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "splitbrain",
                                "display_name": "splitbrain", "language": "python"}},
                                "nbformat": 4, "nbformat_minor": 5}))
    return path


def _nbconvert(path, env, *extra):
    return subprocess.run([JUPYTER, "nbconvert", "--to", "notebook", "--execute", str(path), "--output-dir",
                           str(path.parent / "out"), "--ExecutePreprocessor.timeout=60",
                           "--ExecutePreprocessor.kernel_name=splitbrain", *extra],
                          env=env, capture_output=True, text=True, timeout=300)


def _seconds(cell):
    timing = cell["metadata"]["execution"]
    start, end = (datetime.datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


def test_issue_12_a_notebook_whose_slave_is_down_fails_in_one_plain_paragraph(dead_registry, tmp_path):
    path = _notebook(tmp_path / "dead.ipynb", "print('before')", "%%slave dead-box\nimport os\nos.getcwd()")
    done = _nbconvert(path, dead_registry)
    assert done.returncode != 0, done.stderr[-3000:]
    # SHALL carry no ANSI codes when not on a terminal
    assert "\x1b[" not in done.stderr, done.stderr[-3000:]
    # nbclient prints the cell between two rules of dashes, then the kernel's traceback
    message = done.stderr.rpartition("------------------\n")[2].strip()
    # SHALL say what happened (issue 10): the port refuses connections, which is known at once
    assert "[splitbrain.nothing_listening] nothing listens on tcp://127.0.0.1:" in message, done.stderr[-3000:]
    assert "(the connection to dead-box was refused)" in message, done.stderr[-3000:]
    paragraph = message.split("\n\n")[0]
    # SHALL be one paragraph: the error with its advice, no traceback of our machinery
    assert paragraph.startswith("NothingListening: [splitbrain.nothing_listening]"), message
    assert len(paragraph.splitlines()) <= 3, message
    assert not any(w in message for w in ("Traceback", "run_cell_magic", "_slave.py", "magics.py")), message


def test_issue_12_a_notebook_whose_slave_is_down_fails_well_within_the_liveness_timeout(dead_registry, tmp_path):
    path = _notebook(tmp_path / "dead.ipynb", "%%slave dead-box\nimport os\nos.getcwd()")
    done = _nbconvert(path, dead_registry, "--allow-errors")
    assert done.returncode == 0, done.stderr[-3000:]
    cell = json.loads((tmp_path / "out" / "dead.ipynb").read_text())["cells"][0]
    errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
    assert errors and errors[0]["ename"] == "NothingListening", cell["outputs"]  # an AgentUnreachable
    assert not any("\x1b[" in line for line in errors[0]["traceback"]), errors[0]["traceback"]
    took = _seconds(cell)
    # SHALL fail well within the liveness timeout: "nothing listening" is known at once
    assert took < DEFAULT_TIMEOUT / 2, f"the cell took {took:.2f} s (liveness timeout {DEFAULT_TIMEOUT} s)"


def test_issue_12_slaves_check_is_a_ci_preflight_in_the_notebook(dead_registry, tmp_path):
    path = _notebook(tmp_path / "check.ipynb", "%slave spawn live-box", "%slaves --check --timeout 2")
    done = _nbconvert(path, dead_registry, "--allow-errors")
    assert done.returncode == 0, done.stderr[-3000:]
    cell = json.loads((tmp_path / "out" / "check.ipynb").read_text())["cells"][1]
    text = "".join("".join(o["text"]) for o in cell["outputs"] if o["output_type"] == "stream")
    # SHALL probe every registry entry, one line each ...
    assert re.search(r"^dead-box  down  \[splitbrain\.\w+\] ", text, re.M), text
    assert re.search(r"^live-box  up    tcp://127\.0\.0\.1:\d+  [\d.]+ ms", text, re.M), text
    # ... and fail the cell, so that the run stops there
    errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
    assert errors and errors[0]["traceback"] == [
        f"ConnectionError: {errors[0]['evalue']}"], errors
    assert "[splitbrain.slaves_down] 1 of 2 slaves are down: dead-box" in errors[0]["evalue"]
    assert _seconds(cell) < 2 * 2 + 1, "the check waited longer than its timeout"


def test_issue_12_splitbrain_check_probes_every_entry_with_a_timeout(dead_registry):
    done = subprocess.run([sys.executable, "-m", "splitbrain", "check", "--timeout", "1"], env=dead_registry,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert re.fullmatch(r"dead-box  down  \[splitbrain\.\w+\] .*\n", done.stdout), done.stdout
