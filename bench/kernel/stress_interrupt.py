"""The kernel survives an interrupt at any moment of its start (issue 10, point 12).

Starts splitbrain-kernel N times through jupyter_client. Each start sends one interrupt at a
random moment, then a first cell, `print(6 * 7)`, which SHALL reply "ok" with the output "42\\n"
within the deadline; the kernel then SHALL shut down with status 0 and nothing alarming on its
stderr. The moment is drawn, per start, from one of four windows:

  loader     uniformly in the first 5 ms after start_kernel(), by km.interrupt_kernel() (the
             kernelspec's interrupt_mode "message": an interrupt_request): while the dynamic loader
             maps the kernel's libraries, before its main() (a SIGINT there would kill it)
  start      the same, uniformly in the first second: during Python's initialisation and the
             kernel's own imports, around the first reply
  after-info SIGINT to the kernel's process group (what `kill -INT` or a signal-mode client sends)
             0-20 ms after the first kernel_info_reply: while the kernel creates its IPython shell
             (the warm-up), test_interrupt's flaky window
  message    like after-info, with an interrupt_request on the control channel sent by hand; the
             cell is sent once its interrupt_reply came

The interrupt is always sent before the cell, so the cell must not see it. Prints the counts
by window and outcome; exit status 1 when any start failed. A start whose kernel could not bind a
port (jupyter_client chose it free, another process took it meanwhile) is made again and counted.

    .venv/bin/python bench/kernel/stress_interrupt.py [--starts 200] [--jobs 2] [--seed S] [--json]

The splitbrain kernelspec is found through JUPYTER_PATH (default: $SPLITBRAIN_BUILD_DIR/share/jupyter,
else build/share/jupyter), the kernel's Python packages through PYTHONPATH (default: that build
directory's python/). tests/kernel/test_interrupt_stress.py runs a short version.
"""
import argparse
import collections
import concurrent.futures
import json
import os
import pathlib
import random
import signal
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
WINDOWS = ("loader", "start", "after-info", "message")
PORT_RACES = []  # starts made again because a port jupyter_client chose was taken meanwhile
# What must never appear on a kernel's stderr (as tests/kernel/conftest.py), and any error id.
CRASH_MARKERS = ("terminate called", "Fatal Python error", "Segmentation fault", "core dumped",
                 "Aborted", "Exception ignored", "Traceback")


def error_id_prefix():
    """How every error id starts, as the one builder writes it."""
    from splitbrain._errors import message
    return message("kernel_failed", "").partition("kernel_failed")[0]


def reply_to(channel_get, msg_id, deadline):
    while True:
        msg = channel_get(timeout=max(0.0, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def one_start(window, delay, workdir, deadline_s=30.0, kernel_name="splitbrain"):
    """Returns (outcome, detail): outcome "ok" or what went wrong, detail with the end of the
    kernel's stderr when it is not."""
    for attempt in range(3):
        outcome, detail = start_and_run(window, delay, workdir, deadline_s, kernel_name)
        # jupyter_client picks free ports and the kernel binds them later: another process may
        # take one meanwhile. Not the kernel's doing, and before any interrupt mattered: again.
        if "Address already in use" not in (workdir / "kernel.stderr").read_text(errors="replace"):
            break
        PORT_RACES.append(workdir.name)
    if outcome != "ok" and outcome != "stderr":
        text = (workdir / "kernel.stderr").read_text(errors="replace").strip()
        if text:
            detail += "\n    kernel stderr: " + text[-600:].replace("\n", "\n    ")
    return outcome, detail


def start_and_run(window, delay, workdir, deadline_s, kernel_name):
    from jupyter_client import KernelManager

    stderr_path = workdir / "kernel.stderr"
    with open(stderr_path, "w") as stderr:
        km = KernelManager(kernel_name=kernel_name)
        km.start_kernel(stderr=stderr, cwd=str(workdir))
        started = time.monotonic()
        deadline = started + deadline_s
        process = km.provisioner.process
        kc = km.client()
        kc.start_channels()
        try:
            interrupted = threading.Event()
            if window in ("loader", "start"):
                def interrupt_later():
                    time.sleep(max(0.0, started + delay - time.monotonic()))
                    km.interrupt_kernel()
                    interrupted.set()

                threading.Thread(target=interrupt_later, daemon=True).start()
            info = kc.kernel_info()
            try:
                reply_to(kc.get_shell_msg, info, deadline)
            except Exception:
                return "no kernel_info_reply", f"exit status {process.poll()}"
            if window not in ("loader", "start"):
                time.sleep(delay)
                if window == "after-info":
                    os.killpg(process.pid, signal.SIGINT)
                else:
                    request = kc.session.msg("interrupt_request", {})
                    kc.control_channel.send(request)
                    try:
                        reply_to(kc.get_control_msg, request["header"]["msg_id"], deadline)
                    except Exception:
                        return "no interrupt_reply", f"exit status {process.poll()}"
                interrupted.set()
            if not interrupted.wait(max(0.0, deadline - time.monotonic())):
                return "interrupt not sent", ""
            if process.poll() is not None:
                return "died", f"exit status {process.poll()}"
            texts = []
            try:
                reply = kc.execute_interactive(
                    "print(6 * 7)", timeout=max(0.0, deadline - time.monotonic()),
                    output_hook=lambda m: texts.append(m["content"].get("text")))
            except Exception as e:
                return ("died" if process.poll() is not None else "no reply"), \
                    f"{type(e).__name__}: {e}; exit status {process.poll()}"
            content = reply["content"]
            if content["status"] != "ok":
                return "cell failed", f"{content.get('ename')}: {content.get('evalue')}"
            if "42\n" not in texts:
                return "output lost", repr(texts)
        finally:
            kc.stop_channels()
            if process.poll() is None:
                km.shutdown_kernel()
        status = process.wait(timeout=30)
    if status != 0:
        return "bad exit status", str(status)
    text = stderr_path.read_text()
    for marker in CRASH_MARKERS + (error_id_prefix(),):
        if marker in text:
            return "stderr", text[-2000:]
    return "ok", ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2, help="kernels started at the same time")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--windows", default=",".join(WINDOWS), help="comma-separated subset of " + ", ".join(WINDOWS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    build_dir = os.environ.get("SPLITBRAIN_BUILD_DIR", str(ROOT / "build"))
    os.environ.setdefault("JUPYTER_PATH", str(pathlib.Path(build_dir) / "share" / "jupyter"))
    if "PYTHONPATH" not in os.environ:  # the kernel's Python half, and splitbrain's error ids here
        os.environ["PYTHONPATH"] = str(pathlib.Path(build_dir) / "python")
        sys.path.insert(0, os.environ["PYTHONPATH"])
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    windows = [w for w in args.windows.split(",") if w]
    unknown = set(windows) - set(WINDOWS)
    if unknown:
        parser.error(f"unknown window(s) {sorted(unknown)}; known: {', '.join(WINDOWS)}")
    plan = []
    for i in range(args.starts):
        window = windows[i % len(windows)]
        span = {"loader": 0.005, "start": 1.0}.get(window, 0.02)
        plan.append((window, rng.uniform(0.0, span)))

    counts = collections.Counter()
    failures = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="splitbrain-stress-") as tmp:
        def run(i):
            window, delay = plan[i]
            workdir = pathlib.Path(tmp) / str(i)
            workdir.mkdir()
            try:
                outcome, detail = one_start(window, delay, workdir)
            except Exception as e:  # the harness itself: counted, never hides a start
                outcome, detail = "harness error", f"{type(e).__name__}: {e}"
            return i, window, delay, outcome, detail

        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for i, window, delay, outcome, detail in pool.map(run, range(len(plan))):
                counts[(window, outcome)] += 1
                if outcome != "ok":
                    failures.append({"start": i, "window": window, "delay_ms": round(delay * 1000, 2),
                                     "outcome": outcome, "detail": detail})
                    if not args.json:
                        print(f"start {i} ({window}, {delay * 1000:.1f} ms): {outcome}: {detail}", flush=True)
    elapsed = time.monotonic() - began
    failed = sum(n for (w, o), n in counts.items() if o != "ok")
    result = {"seed": seed, "starts": len(plan), "failed": failed, "seconds": round(elapsed, 1),
              "port_races_retried": len(PORT_RACES),
              "counts": {f"{w}/{o}": n for (w, o), n in sorted(counts.items())}, "failures": failures}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{len(plan)} starts in {elapsed:.0f} s (seed {seed}): {failed} failed"
              f" ({len(PORT_RACES)} made again after a port race)")
        for (w, o), n in sorted(counts.items()):
            print(f"  {w:<11} {o:<22} {n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
