"""Shutdown and restart through jupyter_client end the kernel process cleanly: exit status 0,
nothing on stderr, Python's atexit handlers run (issue 2, point 4)."""
import os
import signal
import subprocess
import time

from conftest import assert_clean_stderr, printed


def test_shutdown_exits_0_with_a_clean_stderr(start_kernel):
    kernel = start_kernel()
    reply, _ = kernel.execute("x = 1")
    assert reply["status"] == "ok"
    assert kernel.shutdown() == 0
    assert kernel.stderr() == ""


def test_atexit_handlers_run_at_shutdown(start_kernel, tmp_path):
    kernel = start_kernel()
    marker = tmp_path / "atexit-ran"
    kernel.execute(f"import atexit, pathlib; atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')")
    assert kernel.shutdown() == 0
    assert marker.read_text() == "yes"


def test_restart_gives_a_fresh_interpreter_and_the_old_process_exits_0(start_kernel):
    kernel = start_kernel()
    kernel.execute("x = 'before restart'")
    old_process = kernel.process
    kernel.km.restart_kernel()
    assert old_process.wait(timeout=30) == 0
    kernel.process = kernel.km.provisioner.process
    assert kernel.process.pid != old_process.pid
    kernel.kc.wait_for_ready(timeout=60)
    reply, outputs = kernel.execute("print('x' in globals())")
    assert printed(outputs) == [("stdout", "False\n")]
    assert kernel.shutdown() == 0
    assert_clean_stderr(kernel.stderr())


def test_shutdown_while_a_cell_runs_exits_0_promptly(start_kernel):
    kernel = start_kernel()
    msg_id = kernel.kc.execute("import time; time.sleep(600)")
    kernel.wait_busy(msg_id)
    started = time.monotonic()
    assert kernel.shutdown() == 0
    assert time.monotonic() - started < 5
    assert_clean_stderr(kernel.stderr())


def test_shutdown_with_a_non_daemon_thread_still_running_exits_0_within_jupyter_clients_patience(
        start_kernel, tmp_path):
    """Python would join the thread for 60 s; jupyter_client kills a kernel that has not exited
    shutdown_wait_time (5 s) after shutdown_request. The thread gets 1 s, atexit handlers run."""
    kernel = start_kernel()
    marker = tmp_path / "atexit-ran"
    reply, _ = kernel.execute(
        "import atexit, pathlib, threading, time\n"
        f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
        "threading.Thread(target=time.sleep, args=(60,), name='sleeper').start()\n")
    assert reply["status"] == "ok"
    started = time.monotonic()
    assert kernel.shutdown() == 0
    assert time.monotonic() - started < 4
    assert marker.read_text() == "yes"
    text = kernel.stderr()
    assert_clean_stderr(text)
    assert text.splitlines() == ["[splitbrain.kernel_threads_left_running] 1 non-daemon thread(s) still running "
                                 "1 s after shutdown was asked, left unjoined: sleeper"]


def test_a_non_daemon_thread_that_ends_within_the_grace_is_joined_at_shutdown(start_kernel, tmp_path):
    kernel = start_kernel()
    marker = tmp_path / "thread-finished"
    reply, _ = kernel.execute(
        "import pathlib, threading, time\n"
        "def finish():\n"
        "    time.sleep(0.3)\n"
        f"    pathlib.Path({str(marker)!r}).write_text('yes')\n"
        "threading.Thread(target=finish).start()\n")
    assert reply["status"] == "ok"
    assert kernel.shutdown() == 0
    assert marker.read_text() == "yes"
    assert kernel.stderr() == ""


def test_shutdown_while_input_waits_exits_0(start_kernel):
    kernel = start_kernel()
    kernel.kc.execute("input('never answered: ')", allow_stdin=True)
    assert kernel.kc.get_stdin_msg(timeout=10)["content"]["prompt"] == "never answered: "
    assert kernel.shutdown() == 0
    assert_clean_stderr(kernel.stderr())


def test_shutdown_request_without_interrupt_exits_0(start_kernel):
    """A client that only sends shutdown_request (no SIGINT first, unlike jupyter_client)."""
    kernel = start_kernel()
    msg_id = kernel.kc.execute("import time; print('sleeping', flush=True); time.sleep(600)")
    kernel.wait_for_stream(msg_id, "sleeping")
    kernel.kc.shutdown()
    assert kernel.process.wait(timeout=10) == 0
    assert_clean_stderr(kernel.stderr())


def test_a_shutdown_request_racing_the_start_of_a_long_cell_ends_the_kernel_promptly(start_kernel):
    """Sent together, the shutdown either keeps the cell from starting or interrupts it (the
    interleavings are proven one by one in run_state_test.cpp)."""
    kernel = start_kernel()
    kernel.execute("import time")
    kernel.kc.execute("time.sleep(600)")
    kernel.kc.shutdown()
    assert kernel.process.wait(timeout=10) == 0
    assert_clean_stderr(kernel.stderr())


def kernel_executable():
    build_dir = os.environ["SPLITBRAIN_BUILD_DIR"]
    return os.path.join(build_dir, "kernel", "splitbrain-kernel")


def test_a_missing_connection_file_is_a_clear_error():
    run = subprocess.run([kernel_executable(), "-f", "/nonexistent/connection.json"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "[splitbrain.kernel_start_failed]" in run.stderr
    assert_clean_stderr(run.stderr)


def test_version_and_usage():
    run = subprocess.run([kernel_executable(), "--version"], capture_output=True, text=True, timeout=10)
    assert run.returncode == 0
    assert run.stdout.startswith("splitbrain-kernel ")
    run = subprocess.run([kernel_executable(), "--bogus"], capture_output=True, text=True, timeout=10)
    assert run.returncode == 2
    assert "[splitbrain.kernel_usage]" in run.stderr


STARTER = """
import sys, time
from jupyter_client import KernelManager
km = KernelManager(kernel_name="splitbrain")
km.start_kernel(stderr=open(sys.argv[1], "w"))
kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
print(km.provisioner.process.pid, flush=True)
time.sleep(600)
"""


def process_is_gone(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return any(line.split() == ["State:", "Z", "(zombie)"] for line in status)
    except FileNotFoundError:
        return True


def test_the_kernel_exits_when_the_process_that_started_it_dies(tmp_path):
    """SHALL not be left behind as an orphan when Jupyter is killed (ipykernel's parent poller)."""
    stderr = tmp_path / "kernel.stderr"
    starter = subprocess.Popen([os.sys.executable, "-c", STARTER, str(stderr)], stdout=subprocess.PIPE, text=True)
    kernel_pid = None
    try:
        kernel_pid = int(starter.stdout.readline())
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + 10
        while not process_is_gone(kernel_pid):
            assert time.monotonic() < deadline, "the orphaned kernel is still running"
            time.sleep(0.1)
    finally:
        starter.kill()
        if kernel_pid is not None and not process_is_gone(kernel_pid):
            os.kill(kernel_pid, signal.SIGKILL)
    text = stderr.read_text()
    assert "[splitbrain.kernel_orphaned]" in text
    assert_clean_stderr(text)
