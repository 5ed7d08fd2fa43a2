"""Local demo agents for `make lab` and the notebook tests.

Starts one real ``splitbrain-agent`` per name on a free loopback port (CurveZMQ, fresh agent keys,
accepting only this user's client key), each in a working directory of its own so that
``os.getcwd()`` tells them apart, and registers them in the splitbrain registry under their names.

    python scripts/demo_agents.py --state DIR bench-a bench-b -- jupyter lab ...

runs the command after the agents are up and stops the agents when it ends (or on SIGTERM/SIGINT).
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from splitbrain import _registry


def _agent_binary():
    explicit = os.environ.get("SPLITBRAIN_AGENT")
    if explicit:
        return explicit
    beside = os.path.join(os.path.dirname(sys.executable), "splitbrain-agent")
    return beside if os.access(beside, os.X_OK) else (shutil.which("splitbrain-agent") or beside)


def _start(name, state, timeout):
    binary = _agent_binary()
    home = os.path.join(state, name)
    keys = os.path.join(home, "keys")
    cwd = os.path.join(home, "files")
    os.makedirs(cwd, exist_ok=True)
    if not os.path.exists(os.path.join(keys, "agent.key")):
        subprocess.run([binary, "keygen", keys], check=True, capture_output=True)
    client_public, _ = _registry.client_keys()
    authorized = os.path.join(home, "authorized_keys")
    with open(authorized, "w", encoding="ascii") as f:
        f.write(f"# this user's splitbrain client key\n{client_public}\n")
    connection = os.path.join(home, "connection.json")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(connection)
    log = open(os.path.join(home, "agent.log"), "ab")
    command = [binary, "serve", "--listen", "tcp://127.0.0.1:*", "--key", keys,
               "--authorized-keys", authorized, "--connection-file", connection]
    if sys.prefix != sys.base_prefix:
        command += ["--python", sys.prefix]
    process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"[splitbrain.spawn_failed] demo agent {name} exited with "
                               f"{process.returncode}; see {home}/agent.log")
        try:
            with open(connection, encoding="utf-8") as f:
                info = json.load(f)
            break
        except (FileNotFoundError, ValueError):
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"[splitbrain.spawn_failed] demo agent {name} wrote no connection "
                                   f"file within {timeout:g} s; see {home}/agent.log") from None
            time.sleep(0.02)
    _registry.save(name, info["address"], info.get("public_key"))
    return process, info


@contextlib.contextmanager
def demo_agents(names, state, timeout=20.0):
    """Start and register the named agents; stop them on exit. Yields {name: connection info}."""
    processes = {}
    infos = {}
    try:
        for name in names:
            processes[name], infos[name] = _start(name, state, timeout)
        yield infos
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", required=True, help="directory for the agents' keys, logs, files")
    parser.add_argument("names", nargs="+", help="names to register the agents under; then "
                        "optionally -- and a command to run while they are up")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    child = None

    def forward(signum, _frame):
        # JupyterLab shuts its kernels down on SIGTERM/SIGINT; the agents go after it has ended.
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        else:
            sys.exit(0)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    with demo_agents(args.names, args.state) as infos:
        for name, info in infos.items():
            print(f"demo agent {name}: {info['address']} (registered in {_registry.config_dir()})",
                  flush=True)
        if not command:
            return 0
        child = subprocess.Popen(command)
        while True:
            try:
                return child.wait()
            except InterruptedError:
                continue


if __name__ == "__main__":
    sys.exit(main())
