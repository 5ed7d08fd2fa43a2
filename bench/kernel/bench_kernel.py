"""splitbrain-kernel against ipykernel, in one run, through the same jupyter_client code.

Measures, for each kernel:
  start    cold start: KernelManager.start_kernel() until the first kernel_info_reply
  first    cold start until the execute_reply of a first trivial cell (what a notebook user waits for)
  execute  round trip of a trivial execute_request ("x = 1") until its execute_reply, on a warm kernel

and prints medians, spreads (min..max and the interquartile range) and the ratios
splitbrain / ipykernel. Goals: start <= 0.5x, first <= 0.8x, execute <= 1.0x. `--also SPEC` measures
another kernelspec in the same run (for example an older build's, to compare before and after).

splitbrain-kernel answers kernel_info before it creates its IPython shell (most of its start-up:
the imports of IPython, prompt_toolkit and jedi) and creates it right after; ipykernel creates it
first. So a client sees the kernel ready sooner, and the shell's cost shows in `first`, not `start`.

    .venv/bin/python bench/kernel/bench_kernel.py [--starts 7] [--executes 300] [--also SPEC] [--json]

The splitbrain kernelspec is found through JUPYTER_PATH (default: $SPLITBRAIN_BUILD_DIR/share/jupyter,
else build/share/jupyter); ipykernel gets its own kernelspec in a temporary directory, run by this
venv's python. Starts of the two kernels alternate, and so do the execute requests to two warm kernels, so that
drift in the machine's load hits both alike.
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


def quartiles(samples):
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[0], q[2]


def summary(samples):
    q1, q3 = quartiles(samples)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "q1": q1, "q3": q3, "n": len(samples)}


def cold_start(kernel_name):
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name=kernel_name)
    started = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    msg_id = kc.kernel_info()
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - started
    msg_id = kc.execute("x = 1")
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    first = time.perf_counter() - started
    return km, kc, elapsed, first


def execute_round_trip(kc):
    started = time.perf_counter()
    msg_id = kc.execute("x = 1")
    while True:
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - started
    assert reply["content"]["status"] == "ok", reply["content"]
    return elapsed


def drain_iopub(kc):
    while True:
        try:
            kc.get_iopub_msg(timeout=0.05)
        except Exception:
            break


def named(kernel, step, function, *args):
    """function(*args), with the kernel and the step named when it fails (a lost reply)."""
    try:
        return function(*args)
    except Exception as e:
        raise RuntimeError(f"{kernel}: {step} failed: {e!r}") from e


def stop(km, kc):
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def ms(seconds):
    return f"{seconds * 1000:8.2f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=7, help="cold starts per kernel")
    parser.add_argument("--executes", type=int, default=300, help="execute round trips per kernel")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--also", action="append", default=[], metavar="SPEC",
                        help="another kernelspec (found through JUPYTER_PATH) measured alike, e.g. an older build's")
    args = parser.parse_args()

    build_dir = pathlib.Path(os.environ.get("SPLITBRAIN_BUILD_DIR", ROOT / "build"))
    with tempfile.TemporaryDirectory() as tmp:
        spec = pathlib.Path(tmp) / "kernels" / "ipykernel-bench"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "ipykernel (bench)", "language": "python"}))
        paths = [tmp, os.environ.get("JUPYTER_PATH") or str(build_dir / "share" / "jupyter")]
        os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)

        kernels = {"splitbrain": "splitbrain", "ipykernel": "ipykernel-bench"}
        kernels.update({spec_name: spec_name for spec_name in args.also})
        starts = {name: [] for name in kernels}
        firsts = {name: [] for name in kernels}
        for _ in range(args.starts):
            for name, spec_name in kernels.items():
                km, kc, elapsed, first = named(name, "cold start", cold_start, spec_name)
                starts[name].append(elapsed)
                firsts[name].append(first)
                stop(km, kc)

        # Warm kernels side by side; requests alternate between them.
        warm = {name: cold_start(spec_name)[:2] for name, spec_name in kernels.items()}
        executes = {name: [] for name in kernels}
        for i in range(20 + args.executes):
            for name, (km, kc) in warm.items():
                elapsed = named(name, "execute round trip", execute_round_trip, kc)
                if i >= 20:
                    executes[name].append(elapsed)
            if i % 50 == 0:
                for km, kc in warm.values():
                    drain_iopub(kc)
        for km, kc in warm.values():
            stop(km, kc)

    figures = {name: {"start": summary(starts[name]), "first": summary(firsts[name]),
                      "execute": summary(executes[name])} for name in kernels}
    print(f"start: cold, to kernel_info_reply; first: cold, to the first execute_reply ({args.starts} runs each);\n"
          f"execute: warm round trip of 'x = 1' to execute_reply ({args.executes} runs). "
          f"median [q1 .. q3] (min .. max):")
    for what in ("start", "first", "execute"):
        for name in kernels:
            s = figures[name][what]
            print(f"  {what:8} {name:16} {ms(s['median'])}  [{ms(s['q1']).strip()} .. {ms(s['q3']).strip()}]"
                  f"  ({ms(s['min']).strip()} .. {ms(s['max']).strip()})")
    ratios = {what: figures["splitbrain"][what]["median"] / figures["ipykernel"][what]["median"]
              for what in ("start", "first", "execute")}
    print(f"ratio splitbrain/ipykernel: start {ratios['start']:.2f}x (goal <= 0.5x), "
          f"first {ratios['first']:.2f}x (goal <= 0.8x), execute {ratios['execute']:.2f}x (goal <= 1.0x)")
    for name in args.also:
        also = {what: figures[name][what]["median"] / figures["ipykernel"][what]["median"]
                for what in ("start", "first", "execute")}
        print(f"ratio {name}/ipykernel: start {also['start']:.2f}x, first {also['first']:.2f}x, "
              f"execute {also['execute']:.2f}x")
    if args.json:
        print(json.dumps({"bench": "kernel", "figures": figures, "ratios": ratios}))


if __name__ == "__main__":
    main()
