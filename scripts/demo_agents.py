"""Local demo agents for `make lab` and the notebook tests.

Starts one real ``splitbrain-agent`` per name on a free loopback port (CurveZMQ, fresh agent keys,
accepting only this user's client key), each in a working directory of its own so that
``os.getcwd()`` tells them apart, and registers them in the splitbrain registry under their names.

    python scripts/demo_agents.py --state DIR bench-a bench-b -- jupyter lab ...

runs the command after the agents are up and stops the agents when it ends (or on SIGTERM/SIGINT);
then the registry is as it was before: the demo entries are removed, and an entry the user had
under one of the names is put back.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys

from splitbrain import _registry, _spawn


def _start(name, state, timeout):
    """The agent *name*, its keys, log and connection file kept in STATE/NAME, serving from
    STATE/NAME/files; registered under *name*."""
    home = os.path.join(state, name)
    cwd = os.path.join(home, "files")
    os.makedirs(cwd, exist_ok=True)
    client_public, _ = _registry.client_keys()
    agent = _spawn.Agent(home, authorized=[client_public], cwd=cwd, timeout=timeout)
    _registry.save(name, agent.address, agent.public_key)
    return agent


def _unregister(name, agent, before):
    """Take *name* out of the registry again, or give back the entry the user had under it, unless
    someone re-registered *name* meanwhile (then the entry is theirs now)."""
    entry = _registry.entries().get(name)
    if entry is None or entry.get("address") != agent.address:
        return
    if before is None:
        _registry.forget(name)
    else:
        _registry.save(name, before.get("address"), before.get("public_key"))


@contextlib.contextmanager
def demo_agents(names, state, timeout=20.0):
    """Start and register the named agents; on exit stop them and leave the registry as it was
    (their entries removed, or the user's own entries under those names restored). Yields
    {name: connection info}."""
    before = {name: _registry.entries().get(name) for name in names}
    agents = {}
    try:
        for name in names:
            agents[name] = _start(name, state, timeout)
        yield {name: {"address": a.address, "public_key": a.public_key} for name, a in agents.items()}
    finally:
        for name, agent in agents.items():
            _unregister(name, agent, before[name])
            agent.stop(timeout=5.0)


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
