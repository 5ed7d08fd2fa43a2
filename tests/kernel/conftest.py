"""Fixtures: a real splitbrain-kernel started through jupyter_client from the build tree's
kernelspec, with its stderr captured and its exit status checked."""
import os
import pathlib
import time

import pytest
from jupyter_client import KernelManager

KERNEL_NAME = "splitbrain"
# What must never appear on a kernel's stderr.
CRASH_MARKERS = ("terminate called", "Fatal Python error", "Segmentation fault", "core dumped",
                 "Aborted", "Exception ignored")


def build_tree_kernelspec_check(km):
    build_dir = os.environ.get("SPLITBRAIN_BUILD_DIR")
    if build_dir:
        argv0 = km.kernel_spec.argv[0]
        assert argv0.startswith(os.path.realpath(build_dir)) or argv0.startswith(build_dir), (
            f"the kernelspec found through JUPYTER_PATH runs {argv0}, not the kernel of {build_dir}")


class Kernel:
    """A splitbrain-kernel process and a blocking client talking to it."""

    def __init__(self, workdir: pathlib.Path, env=None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / "kernel.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.km = KernelManager(kernel_name=KERNEL_NAME)
        build_tree_kernelspec_check(self.km)
        kw = {"stderr": self._stderr, "cwd": str(workdir)}
        if env is not None:
            kw["env"] = env
        self.km.start_kernel(**kw)
        self.process = self.km.provisioner.process
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def execute(self, code, timeout=30, stdin_hook=None):
        """Runs `code`; returns (execute_reply content, [(msg_type, content), ...] from iopub)."""
        outputs = []

        def on_iopub(msg):
            if msg["msg_type"] not in ("status", "execute_input"):
                outputs.append((msg["msg_type"], msg["content"]))

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=on_iopub,
                                            allow_stdin=stdin_hook is not None, stdin_hook=stdin_hook)
        return reply["content"], outputs

    def reply_to(self, msg_id, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_shell_msg(timeout=max(0.0, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    def iopub_until(self, predicate, timeout=10):
        """iopub messages up to and including the first for which predicate(msg) holds."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.0, deadline - time.monotonic()))
            seen.append(msg)
            if predicate(msg):
                return seen

    def wait_busy(self, msg_id, timeout=10):
        self.iopub_until(lambda m: m["parent_header"].get("msg_id") == msg_id
                         and m["msg_type"] == "status"
                         and m["content"]["execution_state"] == "busy", timeout)

    def wait_for_stream(self, msg_id, text, timeout=10):
        """Waits for the stream message of request msg_id that contains `text`: a marker a cell
        prints (and flushes) right before the call the test is about."""
        return self.iopub_until(lambda m: m["parent_header"].get("msg_id") == msg_id
                                and m["msg_type"] == "stream" and text in m["content"]["text"], timeout)

    def stderr(self):
        self._stderr.flush()
        return self.stderr_path.read_text()

    def shutdown(self, restart=False):
        """Asks the kernel to shut down; returns its exit status."""
        self.kc.stop_channels()
        self.km.shutdown_kernel(restart=restart)
        return self.process.wait(timeout=30)

    def close(self):
        if self.km.has_kernel:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        self._stderr.close()


def printed(outputs):
    """What a frontend shows of a cell's iopub outputs: a stream's consecutive messages joined, as
    (name, text); any other output as (msg_type, content). The kernel coalesces a cell's writes, and
    publishes what is pending 50 ms after the first (kernel/src/output.hpp): on a loaded machine one
    print() can land in two messages ('Return' and ' [1] True\n'), which a frontend shows as one."""
    shown = []
    for kind, content in outputs:
        if kind == "stream" and shown and shown[-1][0] == content["name"] and isinstance(shown[-1][1], str):
            shown[-1] = (content["name"], shown[-1][1] + content["text"])
        elif kind == "stream":
            shown.append((content["name"], content["text"]))
        else:
            shown.append((kind, content))
    return shown


def assert_clean_stderr(text):
    for marker in CRASH_MARKERS:
        assert marker not in text, f"kernel stderr contains {marker!r}:\n{text}"


@pytest.fixture
def start_kernel(tmp_path):
    started = []

    def start(env=None, name="kernel"):
        k = Kernel(tmp_path / f"{name}{len(started)}", env=env)
        started.append(k)
        return k

    yield start
    for k in started:
        k.close()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One kernel shared by a module's tests (each test leaves it idle)."""
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    yield k
    k.close()
