"""Issue 4 point 10: the same checks inside splitbrain-kernel, driven through jupyter_client: a
spawned slave routes os in a `with` block, remote output reaches the cell, a remote
FileNotFoundError is the cell's error, and an interrupt stops a remote sleep promptly."""

import os
import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
from jupyter_client import KernelManager  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

if "splitbrain" not in KernelSpecManager().find_kernel_specs():
    pytest.skip("the splitbrain kernelspec is not built (JUPYTER_PATH=<build>/share/jupyter)",
                allow_module_level=True)


class Kernel:
    def __init__(self, workdir):
        self._stderr = open(workdir / "kernel.stderr", "w")
        self.km = KernelManager(kernel_name="splitbrain")
        self.km.start_kernel(stderr=self._stderr, cwd=str(workdir), env=dict(os.environ))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code, timeout=30):
        """(reply content, text on stdout, error content or None)"""
        out = []
        errors = []

        def on_iopub(msg):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                errors.append(msg["content"])

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=on_iopub)
        return reply["content"], "".join(out), (errors[0] if errors else None)

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)
        self._stderr.close()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    reply, _, error = k.run("import os, subprocess, time, splitbrain\nbox = splitbrain.spawn('linux-box')")
    assert reply["status"] == "ok", error
    yield k
    k.run("box.close()")
    k.close()


def test_a_with_block_in_a_cell_routes_os_to_the_slave(kernel):
    reply, out, error = kernel.run("with box:\n    print(os.getpid() == box.pid, os.getpid() != __import__('posix').getpid())")
    assert reply["status"] == "ok", error
    assert out == "True True\n"


def test_remote_print_and_child_output_appear_in_the_cell_in_order(kernel):
    reply, out, error = kernel.run(
        "with box:\n"
        "    box.modules.builtins.print('one')\n"
        "    subprocess.run(['echo', 'two'])\n"
        "    box.modules.builtins.print('three')\n")
    assert reply["status"] == "ok", error
    assert out == "one\ntwo\nthree\n"


def test_a_remote_file_not_found_error_is_the_cells_error(kernel):
    reply, _, error = kernel.run("with box:\n    os.stat('/no/such/file')")
    assert reply["status"] == "error"
    assert reply["ename"] == "FileNotFoundError"
    assert "/no/such/file" in reply["evalue"]


def test_interrupting_the_kernel_stops_a_remote_sleep_within_a_second(kernel):
    msg_id = kernel.kc.execute("with box:\n    time.sleep(60)")
    deadline = time.monotonic() + 10
    while True:  # wait until the cell is running
        msg = kernel.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "busy"):
            break
    time.sleep(0.3)  # let the remote sleep start; the contract is about the time after the interrupt
    start = time.monotonic()
    kernel.km.interrupt_kernel()
    while True:
        reply = kernel.kc.get_shell_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert time.monotonic() - start < 1.5
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    again, out, error = kernel.run("with box:\n    print(os.getpid() == box.pid)")
    assert again["status"] == "ok", error
    assert out == "True\n"
