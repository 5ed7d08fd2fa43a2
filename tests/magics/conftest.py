"""A real splitbrain-kernel (the build tree's kernelspec, through jupyter_client) with two real
agents spawned from inside it by `%slave spawn`, as a user would."""
import os
import pathlib
import re
import sys
import time

import pytest
from jupyter_client import KernelManager

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: helpers every suite shares
from deadline import wait_until  # noqa: E402,F401  (the suite's tests import it from here)


class Kernel:
    def __init__(self, workdir):
        self.stderr = open(workdir / "kernel.stderr", "w")
        self.km = KernelManager(kernel_name="splitbrain")
        env = dict(os.environ, SPLITBRAIN_CONFIG=str(workdir / "config"))
        self.km.start_kernel(cwd=str(workdir), env=env, stderr=self.stderr)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def execute(self, code, timeout=60):
        """(reply content, [(arrival time, msg_type, content)]) for one cell; every iopub message
        of the cell has arrived when this returns (execute_interactive waits for idle)."""
        outputs = []

        def on_iopub(msg):
            if msg["msg_type"] not in ("status", "execute_input"):
                outputs.append((time.monotonic(), msg["msg_type"], msg["content"]))

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=on_iopub)
        return reply["content"], outputs

    def ok(self, code, timeout=60):
        reply, outputs = self.execute(code, timeout)
        assert reply["status"] == "ok", f"{code!r} failed: {reply.get('ename')}: {reply.get('evalue')}\n" \
                                        + "\n".join(reply.get("traceback", []))
        return outputs

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)
        self.stderr.close()




def _processes():
    """{pid: (parent pid, state, argv)} of this machine's processes (the agents are on loopback)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
        except OSError:  # ended while we looked
            continue
        found[int(entry)] = (int(fields[1]), fields[0], argv)
    return found


def running_below(ancestor, argv):
    """Pids of the live (not zombie) processes running *argv* that descend from *ancestor*."""
    procs = _processes()
    pids = []
    for pid, (parent, state, args) in procs.items():
        if args != argv or state == "Z":
            continue
        while parent > 1 and parent in procs:
            if parent == ancestor:
                pids.append(pid)
                break
            parent = procs[parent][0]
    return pids


def fan_out_areas(outputs):
    """{display id: its last text/plain} of a cell's display areas, following update_display_data
    as a frontend does: a fan-out cell's one area per slave, as it looks when the cell ends."""
    areas = {}
    for _, msg_type, content in outputs:
        display_id = (content.get("transient") or {}).get("display_id")
        if msg_type in ("display_data", "update_display_data") and display_id:
            areas[display_id] = content["data"].get("text/plain", "")
    return areas


def fan_out_text(outputs):
    """A fan-out cell's areas as one text, in the order they appeared."""
    return "".join(fan_out_areas(outputs).values())


def fan_out_blocks(text):
    """{slave name: its block of a fan-out cell's text} (the text under its `[NAME] done …` or
    `[NAME] failed …` state line)."""
    parts = re.split(r"^\[([^\]\n]+)\] (?:done|failed)[^\n]*\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def stdout(outputs):
    return "".join(c["text"] for _, t, c in outputs if t == "stream" and c["name"] == "stdout")


def result(outputs, mime="text/plain"):
    found = [c["data"][mime] for _, t, c in outputs if t == "execute_result" and mime in c["data"]]
    assert found, f"no {mime} execute_result in {outputs}"
    return found[-1]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    k.ok("%slave spawn box-a\n%slave spawn box-b")
    k.ok("import os, sys, time, subprocess\nlocal_pid = os.getpid()")
    yield k
    k.close()
