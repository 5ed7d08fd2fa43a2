"""A client process for the flow tests, run as `python client.py WORKDIR FLAGS CODE`: starts an
agent in WORKDIR (its log is WORKDIR/agent.log) with the serve flags FLAGS (a JSON list), connects to
it, reports {"client", "agent", "worker"} pids and their VmRSS (kB) on stderr as one JSON line, runs
CODE on the slave with builtins.exec (its output comes to our stdout), then reports the peak memory
(VmHWM, kB) of the three processes on stderr as a last JSON line."""
import json
import os
import sys

import splitbrain
from splitbrain import _registry, _spawn


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def main():
    workdir, flags, code = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    public, _ = _registry.client_keys()
    agent = _spawn.Agent(workdir, authorized=[public], exit_with=os.getpid(), extra=flags)
    box = splitbrain.Slave("flow", agent.address, agent.public_key, agent=agent)
    pids = {"client": os.getpid(), "agent": agent.process.pid, "worker": box.pid}
    rss = {name: status_kb(pid, "VmRSS") for name, pid in pids.items()}
    print(json.dumps({"pids": pids, "rss": rss}), file=sys.stderr, flush=True)
    box.modules.builtins.exec(code)
    sys.stdout.flush()
    print(json.dumps({"peak": {name: status_kb(pid, "VmHWM") for name, pid in pids.items()}}), file=sys.stderr,
          flush=True)
    box.close()


main()
