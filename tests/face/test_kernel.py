"""Issue 4 point 10: the same checks inside splitbrain-kernel, driven through jupyter_client: a
spawned slave routes os in a `with` block, contexts nest, remote output reaches the cell, proxies
outlive their cell, libraries and `open` act on the slave, a slave-only module says where it lives,
a remote FileNotFoundError is the cell's error, an interrupt stops a remote call promptly, and the
seed's sketch runs."""

import os
import textwrap
import time

import pytest

from test_seed_sketch import SKETCH

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
    msg_id = kernel.kc.execute("with box:\n    subprocess.run(['sleep', '60'])")  # time is not routed
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
    assert time.monotonic() - start < 1.0
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    again, out, error = kernel.run("with box:\n    print(os.getpid() == box.pid)")
    assert again["status"] == "ok", error
    assert out == "True\n"


def test_contexts_nest_and_restore_in_a_cell(kernel):
    reply, out, error = kernel.run(textwrap.dedent("""
        with box:
            outer = os.getpid()
            with splitbrain.local():
                inner = os.getpid()
            again = os.getpid()
        after = os.getpid()
        print(outer == again == box.pid, inner == after != box.pid, splitbrain.current())
    """))
    assert reply["status"] == "ok", error
    assert out == "True True None\n"


def test_a_proxy_made_in_one_cell_is_used_in_a_later_one(kernel):
    reply, _, error = kernel.run(
        "with box:\n    cat = subprocess.Popen(['cat'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)")
    assert reply["status"] == "ok", error
    reply, out, error = kernel.run(
        "print(cat.communicate(b'later')[0].decode(), repr(cat).startswith('<remote linux-box:'))")
    assert reply["status"] == "ok", error
    assert out == "later True\n"


def test_a_library_imported_in_an_earlier_cell_acts_on_the_slave(kernel, tmp_path):
    (tmp_path / "labtools_k.py").write_text(
        "import subprocess\n"
        "def parent_pid():\n"
        "    return int(subprocess.check_output(['sh', '-c', 'echo $PPID']))\n")
    reply, _, error = kernel.run(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport labtools_k")
    assert reply["status"] == "ok", error
    reply, out, error = kernel.run(
        "with box:\n    there = labtools_k.parent_pid()\nprint(there == box.pid, labtools_k.parent_pid() == os.getpid())")
    assert reply["status"] == "ok", error
    assert out == "True True\n"


def test_a_slave_only_module_works_in_its_context_and_names_the_slave_outside(kernel, tmp_path):
    (tmp_path / "kernel_only_driver.py").write_text("import os\ndef where():\n    return os.getpid()\n")
    reply, out, error = kernel.run(
        f"box.modules.site.addsitedir({str(tmp_path)!r})\n"
        "with box:\n    import kernel_only_driver\n    print(kernel_only_driver.where() == box.pid)")
    assert reply["status"] == "ok", error
    assert out == "True\n"
    reply, _, error = kernel.run("from kernel_only_driver import where")
    assert reply["status"] == "error"
    assert reply["ename"] == "SlaveOnlyModuleError"
    assert "exists only on linux-box" in reply["evalue"]
    assert "splitbrain.slave('linux-box')" in reply["evalue"]


def test_open_in_a_context_opens_the_file_on_the_slave(kernel, tmp_path):
    path = str(tmp_path / "written-by-the-slave.txt")
    reply, out, error = kernel.run(
        f"with box:\n    with open({path!r}, 'w') as f:\n        f.write('remote')\n"
        "print(type(f).__name__, repr(f).startswith('<remote linux-box:'))")
    assert reply["status"] == "ok", error
    assert out == "RemoteTextIO True\n"  # a RemoteObject of the io class of the remote file (README, "Known limits")
    assert open(path).read() == "remote"


def test_the_seed_sketch_runs_in_a_cell(kernel):
    reply, out, error = kernel.run(SKETCH + "slave_win.close()\nslave_lin.close()\n", timeout=60)
    assert reply["status"] == "ok", error
    lines = out.splitlines()
    assert "listing on windows-box" in lines
    assert "bin" in lines and "usr" in lines
    assert "local Popen stays local: True" in lines
    assert "windows-box returncode: 0 True" in lines
    assert "slave Popens are not the local one: True" in lines
