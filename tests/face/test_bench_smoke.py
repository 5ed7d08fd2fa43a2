"""bench/face --smoke runs: every peer of issue 11 point 1 (splitbrain, execnet, the pyzmq CURVE RPC,
RPyC, raw C++ CURVE) measures the workloads, so the benchmark cannot rot between `make bench` runs.
Nothing here asserts a timing."""

import os
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_bench_face_smoke_measures_every_peer():
    env = dict(os.environ)
    env.pop("SPLITBRAIN_CONFIG", None)  # run.sh makes a private one
    done = subprocess.run([str(ROOT / "bench" / "face" / "run.sh"), "--smoke", "--only", "W1,W3,W6run,W7,W9"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for side in ("splitbrain", "execnet", "zmq", "rpyc"):
        assert re.search(rf"^  {side:<10} W7 .* N=1 RT=", done.stderr, re.M), (side, done.stderr[-3000:])
    assert re.search(r"^  raw_curve  rtt .* N=\d+", done.stderr, re.M), done.stderr[-3000:]
    table = done.stdout.split("bench/face against the explicit-RPC peers")[1]
    assert re.search(r"^  W1 .*(execnet|zmq|rpyc) [\d.]+× +[\d.]+× rtt$", table, re.M), table
    assert re.search(r"^  splitbrain W7 .* RT=1$", done.stderr, re.M)  # subprocess.run(...).returncode: 1 round trip
    assert "W6run splitbrain / local" in table


def test_bench_routing_smoke_prints_every_figure_and_its_goal():
    env = dict(os.environ)
    env.pop("SPLITBRAIN_CONFIG", None)  # run.sh makes a private one
    done = subprocess.run([str(ROOT / "bench" / "routing" / "run.sh"), "--smoke", "--json"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for label in ("os.getcwd (attribute only)", "os.fspath('x') captured (call)", "audit hook, sys.audit('os.listdir', d)",
                  "open(local).close() (builtins.open)", "audit hook, watched, refused (raises)"):
        assert re.search(rf"^  {re.escape(label)} +[-+\d.]+", done.stdout, re.M), (label, done.stdout)
    assert re.search(r"^  worst extra outside any context: attribute access [-+\d.]+ ns, audit hook [-+\d.]+ ns",
                     done.stdout, re.M), done.stdout
    assert sum(line.startswith('{"bench": "routing"') for line in done.stdout.splitlines()) == 15
