"""A supervisor killed with SIGKILL leaves nothing behind: no worker, no process a session started
(in the background too), and not its private directory. Its janitor, a process forked before the
agent starts serving, sees the supervisor's end through a pipe and cleans up."""
import os
import signal

from deadline import wait_until

from conftest import Agent


def running(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_killing_the_supervisor_with_sigkill_leaves_no_process_and_no_directory(tmp_path):
    # SHALL: nothing a session started outlives the agent, however the agent ends.
    agent = Agent(tmp_path / "a")
    try:
        client = agent.client()
        subprocess_module = client.module("subprocess")
        popen = client.value(subprocess_module, ["sleep", "300"], path=["Popen"])
        sleeper = client.ok("getattr", o=popen.wire(), name="pid")
        # A shell's background child: not a Popen the worker knows of.
        assert client.value(client.module("os"), "sleep 301 &", path=["system"]) == 0
        background = wait_until(lambda: [int(p) for p in os.listdir("/proc") if p.isdigit() and _is(p, "sleep 301")],
                                what="the backgrounded sleep 301")
        arguments = open(f"/proc/{client.info['pid']}/cmdline", "rb").read().split(b"\0")
        endpoint = arguments[arguments.index(b"--connect") + 1].decode()
        directory = os.path.dirname(endpoint[len("ipc://"):])
        workers = agent.workers()
        janitor = agent.janitor()
        assert janitor is not None and running(janitor)
        assert running(sleeper) and all(running(p) for p in background) and os.path.isdir(directory)

        agent.process.send_signal(signal.SIGKILL)
        agent.process.wait(10)
        for pid in [sleeper, *background, *workers, janitor]:
            wait_until(lambda: not running(pid), timeout=10, what=f"process {pid} to end after the agent's SIGKILL")
        wait_until(lambda: not os.path.exists(directory), timeout=10, what=f"{directory} to be removed")
        client.close()
    finally:
        agent.stop()


def _is(pid, command):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").strip() == command.encode()
    except (FileNotFoundError, ProcessLookupError):
        return False
