"""What %%slave costs in splitbrain-kernel, measured through jupyter_client in one run.

  magic     a trivial cell ("x = 1") under `%%slave a` against the same cell local: the extra
            latency of the magic itself (parse, compile, enter/leave the slave's context).
            Goal: <= 1 ms.
  inside    the same two cells timed inside the kernel (IPython's run_cell, perf_counter_ns):
            the magic's cost without the messaging, whose scheduling noise on a busy machine
            can be larger than the magic itself.
  io        a cell doing one remote call ("x = os.getcwd()") under `%%slave a` against the same
            cell local: the magic plus one round trip to the agent.
  fan-out   one cell run on 8 agents at once (`%%slave a b c d e f g h`) against the same cell
            on one agent, for two cells: 20 back-to-back remote calls (bound by round trips: 8
            agents' supervisors and workers share this machine's 2 cores), and a remote command
            that takes 0.2 s (`subprocess.run(["sleep", "0.2"])`, a test step on each bench).
            Goal: <= 2x.

The agents are real (`%slave spawn`, loopback, CurveZMQ), started by the kernel itself.

    .venv/bin/python bench/kernel/bench_slave.py [--repeat 200] [--json] [--no-fan-out]
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMES = [f"s{i}" for i in range(1, 9)]
FAN_OUT_CELLS = {"20 calls": "for _ in range(20):\n    os.stat('.')",
                 "0.2 s command": "subprocess.run(['sleep', '0.2'])"}


def summary(samples):
    q = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
    return {"median": statistics.median(samples), "q1": q[0], "q3": q[2], "n": len(samples)}


class Kernel:
    def __init__(self, config_dir):
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="splitbrain")
        self.km.start_kernel(env=dict(os.environ, SPLITBRAIN_CONFIG=config_dir))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code):
        """Seconds from execute_request to its execute_reply; raises if the cell failed."""
        started = time.perf_counter()
        msg_id = self.kc.execute(code)
        while True:
            reply = self.kc.get_shell_msg(timeout=120)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        elapsed = time.perf_counter() - started
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"{code!r}: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
        return elapsed

    def output(self, code):
        """What the cell printed to stdout; raises if it failed."""
        chunks = []

        def on_iopub(msg):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                chunks.append(msg["content"]["text"])

        reply = self.kc.execute_interactive(code, timeout=600, output_hook=on_iopub)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}")
        return "".join(chunks)

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def interleaved(kernel, cells, repeat):
    """Each cell run `repeat` times, round-robin, so machine drift hits all alike.

    Each measured run follows an unmeasured run of the same cell. IPython's history thread writes
    the previous cell's input to SQLite under a lock the next cell's store_inputs() takes, so a
    cell that follows a quick one waits for that write (≈1 ms here) and one that follows a slow one
    does not: without the same predecessor, the order of the round-robin, not the cell, decides.
    """
    samples = {name: [] for name in cells}
    for name, code in cells.items():  # warm-up: first imports, first round trips
        for _ in range(3):
            kernel.run(code)
    for _ in range(repeat):
        for name, code in cells.items():
            kernel.run(code)
            samples[name].append(kernel.run(code))
    return {name: summary(s) for name, s in samples.items()}


INSIDE_CELL = """
import statistics as _st, time as _t
def _median_ms(code, n):
    ip = get_ipython()
    for _ in range(20):
        ip.run_cell(code, store_history=False)
    samples = []
    for _ in range(n):
        start = _t.perf_counter_ns()
        ip.run_cell(code, store_history=False)
        samples.append(_t.perf_counter_ns() - start)
    return _st.median(samples) / 1e6
_local = [_median_ms("x = 1", {n}) for _ in range(3)]
_slave = [_median_ms("%%slave s1\\nx = 1", {n}) for _ in range(3)]
print(min(_local), min(_slave))
"""


def inside_kernel(kernel, repeat):
    """(local, %%slave) medians in ms of IPython's run_cell inside the kernel, best of three."""
    text = kernel.output(INSIDE_CELL.format(n=max(repeat, 50)))
    local, slave = (float(v) for v in text.split())
    return local, slave


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="one repetition of everything")
    parser.add_argument("--no-fan-out", action="store_true", help="only the latency of one slave")
    args = parser.parse_args(argv)
    repeat = 1 if args.smoke else args.repeat
    os.environ.setdefault("JUPYTER_PATH", os.path.join(
        os.environ.get("SPLITBRAIN_BUILD_DIR", str(ROOT / "build")), "share", "jupyter"))

    with tempfile.TemporaryDirectory() as config:
        kernel = Kernel(config)
        try:
            kernel.run("\n".join(f"%slave spawn {n}" for n in NAMES))
            kernel.run("import os, subprocess")
            latency = interleaved(kernel, {
                "local x = 1": "x = 1",
                "%%slave x = 1": "%%slave s1\nx = 1",
                "local os.getcwd()": "x = os.getcwd()",
                "%%slave os.getcwd()": "%%slave s1\nx = os.getcwd()",
            }, repeat)
            inside = inside_kernel(kernel, repeat)
            fan = {}
            for label, cell in ({} if args.no_fan_out else FAN_OUT_CELLS).items():
                fan.update(interleaved(kernel, {
                    f"{label}, 1 agent": f"%%slave s1\n{cell}",
                    f"{label}, 8 agents": f"%%slave {' '.join(NAMES)}\n{cell}",
                }, max(1, repeat // 10)))
        finally:
            kernel.close()

    magic = latency["%%slave x = 1"]["median"] - latency["local x = 1"]["median"]
    io = latency["%%slave os.getcwd()"]["median"] - latency["local os.getcwd()"]["median"]
    ratios = {label: fan[f"{label}, 8 agents"]["median"] / fan[f"{label}, 1 agent"]["median"]
              for label in FAN_OUT_CELLS if f"{label}, 1 agent" in fan}
    inside_extra = (inside[1] - inside[0]) / 1e3
    if args.json:
        print(json.dumps({"latency": latency, "fan_out": fan, "magic_extra_s": magic,
                          "io_extra_s": io, "fan_out_ratios": ratios,
                          "inside_kernel_s": {"local": inside[0] / 1e3, "slave": inside[1] / 1e3},
                          "inside_extra_s": inside_extra}, indent=1))
        return 0
    print(f"{'cell':28} {'median':>10} {'q1..q3':>22}  n")
    for name, s in {**latency, **{f'fan-out, {k}': v for k, v in fan.items()}}.items():
        print(f"{name:28} {s['median'] * 1e3:8.2f} ms {s['q1'] * 1e3:9.2f}..{s['q3'] * 1e3:.2f} ms  {s['n']}")
    print(f"\n%%slave extra latency, trivial cell: {magic * 1e3:+.2f} ms (goal <= 1 ms: "
          f"{'met' if magic <= 1e-3 else 'missed'})")
    print(f"%%slave extra inside the kernel (run_cell, no messaging): {inside_extra * 1e3:+.2f} ms "
          f"({inside[0]:.3f} ms local, {inside[1]:.3f} ms %%slave)")
    print(f"%%slave extra latency, one remote call: {io * 1e3:+.2f} ms")
    for label, ratio in ratios.items():
        print(f"fan-out to 8 agents / 1 agent, {label}: {ratio:.2f}x "
              f"(goal <= 2x: {'met' if ratio <= 2 else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
