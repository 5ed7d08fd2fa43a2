"""Compact errors (issue 12): a `%%slave` cell's error is as short as ipykernel's for the same error
raised locally, shows the user's line and the slave's frames, and nothing of IPython's magic machinery
or splitbrain's own; a magic's mistakes are one line; a fan-out's failure or interrupt is a short
summary per slave."""
import json
import os
import re
import sys
import time

import pytest
from jupyter_client import KernelManager

from conftest import fan_out_areas, running_below, result, wait_until

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MACHINERY = ("run_cell_magic", "run_line_magic", "interactiveshell.py", "_proxy.py", "_routing.py",
             "magics.py", "splitbrain/", "skipping hidden", "decorator-gen")


def _lines(traceback):
    return ANSI.sub("", "\n".join(traceback)).splitlines()


@pytest.fixture(scope="module")
def ipykernel(tmp_path_factory):
    """ipykernel from the venv, through a kernelspec of our own (none needs installing anywhere)."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "reference-ipykernel"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ipykernel (reference)", "language": "python"}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", os.pathsep.join([str(root), os.environ.get("JUPYTER_PATH", "")]))
        km = KernelManager(kernel_name="reference-ipykernel")
        km.start_kernel(cwd=str(root))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    kc.execute_interactive("import os, shutil", timeout=60)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def _error(kc, code):
    reply = kc.execute_interactive(code, timeout=60)["content"]
    assert reply["status"] == "error", reply
    return reply


def _compare(kernel, ipykernel, body):
    """(ours, ipykernel's) traceback lines for *body* run on box-a and, by ipykernel, locally."""
    ours = _lines(_error(kernel.kc, "%%slave box-a\n" + body)["traceback"])
    theirs = _lines(_error(ipykernel, body)["traceback"])
    for word in MACHINERY:  # SHALL show nothing of IPython's magic machinery or splitbrain's own
        assert word not in "\n".join(ours), f"{word!r} in:\n" + "\n".join(ours)
    return ours, theirs


def test_a_remote_error_is_as_short_as_ipykernels_local_one(kernel, ipykernel):
    ours, theirs = _compare(kernel, ipykernel, "x = 1\nos.listdir('/no/such/dir')")
    text = "\n".join(ours)
    # SHALL show the user's cell line, then say which slave raised it
    assert "----> 2 os.listdir('/no/such/dir')" in text, text
    assert text.index("----> 2") < text.index("(raised on box-a)"), text
    assert ours[-2].startswith("FileNotFoundError: [Errno 2]"), text
    assert len(ours) <= len(theirs) + 1, f"ours:\n{text}\nipykernel's:\n" + "\n".join(theirs)


def test_a_remote_error_shows_the_slaves_frames_marked_with_its_name(kernel, ipykernel):
    ours, theirs = _compare(kernel, ipykernel, "import shutil\nshutil.rmtree('/no/such/dir')")
    text = "\n".join(ours)
    assert "----> 2 shutil.rmtree('/no/such/dir')" in text, text
    remote = text[text.index("Remote traceback (on box-a):"):]
    assert 'shutil.py", line' in remote and "in rmtree" in remote, text
    # the worker's call stub and the repeated exception line are left out
    assert "<splitbrain>" not in text and "Traceback (most recent call last)" not in remote
    assert len(ours) <= len(theirs), f"ours:\n{text}\nipykernel's:\n" + "\n".join(theirs)


def test_a_local_io_error_in_a_local_cell_shows_no_routing_frame(kernel, ipykernel):
    body = "def read():\n    return open('/no/such/file')\nread()"
    ours = _lines(_error(kernel.kc, body)["traceback"])
    theirs = _lines(_error(ipykernel, body)["traceback"])
    assert "_routing.py" not in "\n".join(ours)
    assert len(ours) <= len(theirs), "\n".join(ours)


@pytest.mark.parametrize("line", ["%slave connect", "%slave connect box-z /no/such/connection.json",
                                  "%slave connect box-z tcp://127.0.0.1:1", "%slaves --bogus"])
def test_a_magics_mistakes_are_one_line(kernel, line):
    reply = _error(kernel.kc, line)
    lines = _lines(reply["traceback"])
    assert len(lines) == 1 and "[splitbrain." in lines[0], lines


def test_a_fan_out_failure_is_a_line_per_slave(kernel):
    reply, out = kernel.execute("%%slave box-a box-b\nos.listdir('/no/such/dir')")
    assert reply["status"] == "error"
    assert _lines(reply["traceback"]) == [f"FanOutError: {reply['evalue']}"]
    # Each slave's area: its state line, then its error in one line with the cell line it came from.
    areas = fan_out_areas(out)
    assert len(areas) == 2, areas
    for name, text in zip(("box-a", "box-b"), sorted(areas.values())):
        state, error = text.splitlines()
        assert state.startswith(f"[{name}] failed (FileNotFoundError) in "), text
        assert error.startswith(f"[{name}] FileNotFoundError: [Errno 2]") and ", line 1)" in error, text


def test_an_interrupted_fan_out_is_a_line_per_slave(kernel):
    workers = [int(result(kernel.ok(f"%%slave {n}\nos.getpid()"))) for n in ("box-a", "box-b")]
    msg_id = kernel.kc.execute('%%slave box-a box-b\nsubprocess.run(["sleep", "60"])')
    for w in workers:
        wait_until(lambda w=w: running_below(w, ["sleep", "60"]), 20, f"sleep under worker {w}")
    kernel.km.interrupt_kernel()
    reply = kernel.kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    texts, areas, deadline = [], {}, time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = kernel.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        if msg["msg_type"] == "stream":
            texts.append(msg["content"]["text"])
        elif msg["msg_type"] in ("display_data", "update_display_data"):
            areas[(msg["content"].get("transient") or {}).get("display_id")] = msg["content"]["data"]["text/plain"]
        elif msg["msg_type"] == "error":
            texts.extend(msg["content"]["traceback"])
    text = ANSI.sub("", "\n".join(texts + list(areas.values())))
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert "[box-a] interrupted" in text and "[box-b] interrupted" in text, text
    # SHALL be a short summary: it was about 5 kB of tracebacks (issue 12)
    assert len(text) < 400, text
