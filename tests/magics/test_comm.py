"""The kernel's `splitbrain` comm, which feeds the JupyterLab extension (labextension/), spoken to
as the extension speaks it: opened once, then the kernel sends its state whenever it changes."""
import queue
import time
import uuid

import pytest


class Comm:
    """A `splitbrain` comm opened from this test, as the extension opens it."""

    def __init__(self, kernel):
        self.kc = kernel.kc
        self.comm_id = uuid.uuid4().hex
        self.kc.shell_channel.send(self.kc.session.msg(
            "comm_open", {"comm_id": self.comm_id, "target_name": "splitbrain", "data": {}}))

    def states(self, timeout=10, until=None):
        """The states sent to this comm within *timeout*, or until one satisfies *until*."""
        found = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            if msg["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == self.comm_id:
                found.append(msg["content"]["data"])
                if until is not None and until(found[-1]):
                    return found
        if until is not None:
            pytest.fail(f"no state matching within {timeout} s; got {found}")
        return found

    def send(self, **data):
        self.kc.shell_channel.send(self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data}))

    def close(self):
        self.kc.shell_channel.send(self.kc.session.msg("comm_close", {"comm_id": self.comm_id, "data": {}}))


def active(state):
    return state["active"]["mode"], state["active"]["names"]


def row(state, name):
    return next((r for r in state["slaves"] if r["name"] == name), None)


@pytest.fixture
def comm(kernel):
    # Whatever earlier tests left on iopub is theirs.
    while True:
        try:
            kernel.kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            break
    opened = Comm(kernel)
    yield opened
    opened.close()


def _execute(kernel, code):
    """Run *code*, leaving its iopub messages (the comm's among them) for Comm.states."""
    msg_id = kernel.kc.execute(code)
    reply = kernel.kc.get_shell_msg(timeout=60)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


def test_the_comm_sends_the_state_when_it_opens(kernel, comm):
    first = comm.states(until=lambda s: True)[0]
    assert active(first) == ("local", [])
    box_a = row(first, "box-a")
    assert box_a["state"] == "connected" and box_a["address"].startswith("tcp://127.0.0.1:")
    assert box_a["platform"] == "linux" and box_a["python"].startswith("3.11")
    assert isinstance(box_a["latency"], float)  # pinged when the comm opened
    # box-a was spawned by the kernel: its agent's log is readable here.
    assert any("listening on tcp://127.0.0.1:" in line for line in box_a["log"]), box_a["log"]


def test_slave_name_and_slave_local_are_sent_as_they_happen(kernel, comm):
    comm.states(until=lambda s: True)
    _execute(kernel, "%slave box-a")
    comm.states(until=lambda s: active(s) == ("sticky", ["box-a"]))
    _execute(kernel, "%slave local")
    comm.states(until=lambda s: active(s) == ("local", []))


def test_a_slave_cell_is_announced_while_it_runs_and_then_what_was_active_again(kernel, comm):
    comm.states(until=lambda s: True)
    _execute(kernel, "%%slave box-b\nos.getpid()")
    states = comm.states(until=lambda s: active(s) == ("local", []))
    assert [active(s) for s in states] == [("cell", ["box-b"]), ("local", [])]
    _execute(kernel, "%%slave box-a box-b\nos.getpid()")
    states = comm.states(until=lambda s: active(s) == ("local", []))
    assert [active(s) for s in states] == [("cell", ["box-a", "box-b"]), ("local", [])]


def test_a_cell_that_changes_nothing_sends_nothing(kernel, comm):
    comm.states(until=lambda s: True)
    _execute(kernel, "1 + 1")
    assert comm.states(timeout=1) == []


def test_a_slave_connected_from_python_shows_after_its_cell(kernel, comm):
    comm.states(until=lambda s: True)
    _execute(kernel, "import splitbrain\nbox_e = splitbrain.connect(f'{splitbrain.slave(\"box-a\").address}"
                     "?key={splitbrain.slave(\"box-a\").public_key}', name='box-e')")
    comm.states(until=lambda s: row(s, "box-e") is not None and row(s, "box-e")["state"] == "connected")
    _execute(kernel, "box_e.close()")
    comm.states(until=lambda s: row(s, "box-e") is None)


def test_the_panels_actions_answer_with_the_new_state_and_one_line(kernel, comm):
    comm.states(until=lambda s: True)
    comm.send(action="spawn", name="box-f")
    state = comm.states(timeout=30, until=lambda s: s["message"] is not None)[-1]
    assert state["message"]["ok"] and state["message"]["text"].startswith("spawned box-f at tcp://127.0.0.1:")
    assert row(state, "box-f")["state"] == "connected"
    comm.send(action="forget", name="box-f")
    state = comm.states(until=lambda s: row(s, "box-f") is None)[-1]
    assert state["message"] == {"action": "forget", "ok": True, "text": "forgot box-f"}
    comm.send(action="connect", name="nosuchbox")
    state = comm.states(until=lambda s: s["message"]["action"] == "connect")[-1]
    assert not state["message"]["ok"]
    assert state["message"]["text"].startswith("UsageError: [splitbrain.unknown_slave] no slave named 'nosuchbox'")
    comm.send(action="refresh")
    state = comm.states(until=lambda s: s["message"]["action"] == "refresh")[-1]
    assert state["message"]["ok"] and isinstance(row(state, "box-a")["latency"], float)


def test_a_kernel_whose_comms_were_opened_still_exits_cleanly(tmp_path):
    # issue 12 - xeus drops the comm callbacks without the GIL when the kernel ends; the kernel
    # crashed (-11) on every shutdown once the target was registered.
    from conftest import Kernel
    kernel = Kernel(tmp_path)
    try:
        opened, closed = Comm(kernel), Comm(kernel)
        opened.states(until=lambda s: True)
        closed.close()
        kernel.ok("1")
    finally:
        kernel.kc.shutdown()
        status = kernel.km.provisioner.process.wait(timeout=30)
        kernel.kc.stop_channels()
        kernel.stderr.close()
    assert status == 0
