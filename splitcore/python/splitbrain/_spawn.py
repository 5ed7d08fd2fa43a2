"""The one launcher of a local agent: ``splitbrain-agent serve`` on a loopback port, with its keys,
connection file and log in a directory of its own.

``splitbrain.spawn()``, ``scripts/demo_agents.py``, the benchmarks and the test fixtures all start
their agents here::

    with Agent(authorized=[client_public]) as agent:    # fresh keys in a private temporary directory
        box = splitbrain.connect(str(agent.connection_file))

A failure to start is a :class:`SpawnError` (the ``spawn_failed`` id) that quotes the agent's log.
"""

import _io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import _errors

__all__ = ["Agent", "agent_binary"]

# The default of Agent(python=...): the virtual environment this interpreter runs in, if any.
THIS_ENVIRONMENT = object()


def agent_binary():
    """``$SPLITBRAIN_AGENT``, else ``splitbrain-agent`` next to ``sys.executable``, else the one on
    PATH; SpawnError if there is none."""
    explicit = os.environ.get("SPLITBRAIN_AGENT")
    if explicit:
        return explicit
    beside = os.path.join(os.path.dirname(sys.executable), "splitbrain-agent")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("splitbrain-agent")
    if found:
        return found
    raise _errors.error("spawn_failed", "splitbrain-agent not found: set SPLITBRAIN_AGENT, or install it "
                                        "next to this Python or on PATH")


class Agent:
    """One ``splitbrain-agent serve`` process of this machine, running once the constructor returns.

    *workdir* holds its files: ``keys/`` (made by ``keygen`` unless there already), ``authorized_keys``
    (the public keys of *authorized*), ``connection.json`` and ``agent.log`` (its stdout and
    stderr, appended). Without *workdir* a private temporary directory is made, and removed by
    :meth:`stop`. *insecure*: plain text, no keys (loopback only). *python*: the environment its
    workers see (``--python``); by default this interpreter's virtual environment if it runs in
    one, None for the agent's own default. *extra*: more ``serve`` flags. *cwd*: the agent's working
    directory. *exit_with*: a pid the agent outlives by no more than a moment (``--exit-with``).
    *binary*: the agent program (default :func:`agent_binary`). *timeout* (seconds) bounds the wait
    for the connection file.

    Attributes: ``address``, ``public_key`` (None when insecure), ``workdir``, ``key_dir``,
    ``connection_file``, ``log_path`` (paths), ``process``.
    """

    def __init__(self, workdir=None, *, authorized=(), insecure=False, listen="tcp://127.0.0.1:*",
                 python=THIS_ENVIRONMENT, extra=(), cwd=None, exit_with=None, binary=None, timeout=15.0):
        self.process = None
        self._owns_workdir = workdir is None
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="splitbrain-agent-")
        else:
            os.makedirs(workdir, mode=0o700, exist_ok=True)
        self.workdir = pathlib.Path(workdir)
        self.key_dir = self.workdir / "keys"
        self.connection_file = self.workdir / "connection.json"
        self.log_path = self.workdir / "agent.log"
        try:
            self._start(binary or agent_binary(), authorized, insecure, listen, python, extra, cwd, exit_with,
                        timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, binary, authorized, insecure, listen, python, extra, cwd, exit_with, timeout):
        command = [binary, "serve", "--listen", listen, "--connection-file", str(self.connection_file)]
        if insecure:
            command.append("--insecure")
        else:
            if not (self.key_dir / "agent.key").exists():
                made = subprocess.run([binary, "keygen", str(self.key_dir)], capture_output=True, text=True,
                                      timeout=timeout)
                if made.returncode != 0:
                    raise _errors.error("spawn_failed", f"{binary} keygen failed ({made.returncode}): "
                                                        f"{made.stderr.strip()}")
            authorized_keys = self.workdir / "authorized_keys"
            with _io.open(authorized_keys, "w", encoding="ascii") as f:
                f.write("# the clients this agent accepts\n" + "".join(f"{key}\n" for key in authorized))
            command += ["--key", str(self.key_dir), "--authorized-keys", str(authorized_keys)]
        if python is THIS_ENVIRONMENT:
            python = sys.prefix if sys.prefix != sys.base_prefix else None
        if python is not None:
            command += ["--python", str(python)]
        if exit_with is not None:
            command += ["--exit-with", str(exit_with)]
        command += [str(flag) for flag in extra]
        try:
            os.unlink(self.connection_file)  # a previous run's, in a directory used again
        except FileNotFoundError:
            pass
        with _io.open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
        info = self._wait_for_connection_file(timeout)
        self.address = info["address"]
        self.public_key = info.get("public_key")

    def _wait_for_connection_file(self, timeout):
        # A private directory goes with the failure, so only a kept log is worth naming.
        kept = "" if self._owns_workdir else f" (log: {self.log_path})"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise _errors.error("spawn_failed", f"the agent exited with {self.process.returncode}{kept}:\n"
                                                    f"{self.log_tail()}")
            try:
                with _io.open(self.connection_file, encoding="utf-8") as f:
                    return json.load(f)
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise _errors.error("spawn_failed", f"the agent wrote no connection file within {timeout:g} s"
                                                    f"{kept}:\n{self.log_tail()}")
            time.sleep(0.01)

    def log(self):
        """All the agent has logged so far."""
        try:
            with _io.open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=20):
        """The last *lines* lines of the log."""
        return "".join(self.log().splitlines(keepends=True)[-lines:])

    def stop(self, timeout=10.0):
        """SIGTERM, SIGKILL after *timeout* seconds; then the private directory goes. Idempotent."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._owns_workdir:
            self._owns_workdir = False
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()
        return False

    def __repr__(self):
        state = "running" if self.process is not None and self.process.poll() is None else "stopped"
        return f"<splitbrain agent {getattr(self, 'address', '?')} ({state}) in {self.workdir}>"
