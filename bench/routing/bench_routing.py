"""bench/routing: what splitbrain costs code that runs outside any slave's context (issue 9 point 9).

    bench/routing/run.sh [--rounds N] [--quick] [--smoke] [--json]

Two child interpreters run side by side: one that never imports splitbrain ("plain") and one that
does ("splitbrain", outside any context unless said). Each measurement is one sample of CPU time of
its child (time.process_time: on a loaded machine the wall clock mostly measures the other
processes) over enough repetitions to take ~20 ms; the parent asks the two children in turn, metric
by metric, round after round (the order alternating), so that both see the same load. A figure is
the median over the rounds, and a difference the median of the per-round differences (paired: the
two samples of a round are taken back to back).

Printed, in ns per operation:
- attribute access on the routed module against the real one (``os.getcwd``, ``os.path.join``,
  ``os.sep``: attribute only; goal ≤ 100 ns more);
- a call outside any context through a name captured from a routed module (its routing callable,
  routed.cpp) against the real function (``os.fspath``, C; ``os.path.join``, Python);
- the audit hook per audited event, plain child against splitbrain's: ``sys.audit`` of an event
  splitbrain does not watch and of one it watches (``os.listdir``), the hook alone (goal ≤ 100 ns
  more); ``os.listdir`` and ``_io.open`` of a local file, the same events with their system calls
  (for scale: their noise is larger than the hook); ``open(p).close()`` through ``builtins.open``
  (splitbrain's ``open``, a Python function);
- inside a slave's context: the hook for an unwatched event, for a watched event of the master's
  own machinery (exempt), and for one refused (user code: the local_io_in_slave_context error);
  ``os.sep`` read from the routed module there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit

GOAL_NS = 100.0
TARGET_S = {"full": 0.02, "quick": 0.01, "smoke": 0.001}
ROUNDS = {"full": 15, "quick": 7, "smoke": 2}

# (name, statement, ops per statement): measured in a child; the namespaces are the child's.
OUTSIDE = [
    ("attr.getcwd.real", "m.getcwd; " * 10, 10),
    ("attr.getcwd.routed", "m_r.getcwd; " * 10, 10),
    ("attr.join.real", "p.join; " * 10, 10),
    ("attr.join.routed", "p_r.join; " * 10, 10),
    ("attr.sep.real", "m.sep; " * 10, 10),
    ("attr.sep.routed", "m_r.sep; " * 10, 10),
    ("call.fspath.real", "fspath('x'); " * 10, 10),
    ("call.fspath.captured", "fspath_r('x'); " * 10, 10),
    ("call.join.real", "join('a', 'b'); " * 10, 10),
    ("call.join.captured", "join_r('a', 'b'); " * 10, 10),
    ("audit.unwatched", "audit('splitbrain.bench', 1); " * 10, 10),
    ("audit.watched", "audit('os.listdir', d); " * 10, 10),
    ("audit.listdir", "listdir(d)", 1),
    ("audit.open", "io_open(f).close()", 1),
    ("open.builtins", "open(f).close()", 1),
]
INSIDE = [
    ("inside.audit.unwatched", "audit('splitbrain.bench', 1); " * 10, 10),
    ("inside.audit.machinery", "machinery()", 1),
    ("inside.audit.refused", "refused()", 1),
    ("inside.attr.sep", "m_r.sep; " * 10, 10),
]
# (label, plain-or-splitbrain child's metric, splitbrain child's metric, in the same child?, goal?)
PAIRS = [
    ("os.getcwd (attribute only)", "attr.getcwd.real", "attr.getcwd.routed", True, True),
    ("os.path.join (attribute only)", "attr.join.real", "attr.join.routed", True, True),
    ("os.sep (attribute only)", "attr.sep.real", "attr.sep.routed", True, True),
    ("os.fspath('x') captured (call)", "call.fspath.real", "call.fspath.captured", True, False),
    ("os.path.join(a, b) captured (call)", "call.join.real", "call.join.captured", True, False),
    ("audit hook, sys.audit unwatched event", "audit.unwatched", "audit.unwatched", False, True),
    ("audit hook, sys.audit('os.listdir', d)", "audit.watched", "audit.watched", False, True),
    ("os.listdir(local dir) (with the syscall)", "audit.listdir", "audit.listdir", False, False),
    ("_io.open(local).close() (the same)", "audit.open", "audit.open", False, False),
    ("open(local).close() (builtins.open)", "open.builtins", "open.builtins", False, False),
]


# -- a child: answers "metric number" with the CPU seconds of that many runs ---------------------

def child(kind, workdir):
    import _io
    import posix
    import posixpath
    namespace = {"audit": sys.audit, "listdir": posix.listdir, "io_open": _io.open, "d": workdir,
                 "f": os.path.join(workdir, "file"), "m": os, "p": posixpath, "fspath": posix.fspath,
                 "join": posixpath.join}
    box = None
    if kind == "splitbrain":
        import splitbrain
        from splitbrain import _core, _routing
        routed_os, routed_path = sys.modules["os"], sys.modules["os.path"]
        assert type(routed_os).__name__ == "RoutedModule", routed_os
        namespace.update(m=_core.routed_real(routed_os), m_r=routed_os, p=_core.routed_real(routed_path),
                         p_r=routed_path, fspath_r=routed_os.fspath, join_r=routed_path.join)
        assert type(namespace["fspath_r"]).__name__ == "RoutingBuiltin"
        assert type(namespace["join_r"]).__name__ == "RoutingFunction"
        _routing.exempt("splitbrain_bench_machinery")
        machinery_globals = {"__name__": "splitbrain_bench_machinery", "audit": sys.audit, "d": workdir}
        exec("def machinery():\n    audit('os.listdir', d)\n", machinery_globals)
        namespace["machinery"] = machinery_globals["machinery"]

        def refused():
            try:
                sys.audit("os.listdir", workdir)
            except RuntimeError:
                pass
        namespace["refused"] = refused
    namespace["open"] = open  # builtins.open: splitbrain's in that child
    compiled = {}
    for line in sys.stdin:
        command, _, number = line.strip().partition(" ")
        if command == "enter":
            box = splitbrain.spawn("bench-routing")
            box.__enter__()
            print("ok", flush=True)
            continue
        if command == "exit":
            if box is not None:
                box.__exit__(None, None, None)
                box.close()
            print("ok", flush=True)
            return
        statement = dict((name, stmt) for name, stmt, _ in OUTSIDE + INSIDE)[command]
        timer = compiled.get(command)
        if timer is None:
            timer = compiled[command] = timeit.Timer(statement, globals=namespace, timer=time.process_time)
        print(repr(timer.timeit(int(number))), flush=True)


class Child:
    def __init__(self, kind, workdir):
        self.kind = kind
        self.process = subprocess.Popen([sys.executable, __file__, "--child", kind, workdir], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def ask(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit(f"bench/routing: the {self.kind} child ended (see its error above)")
        return answer.strip()

    def sample(self, metric, number):
        return float(self.ask(f"{metric} {number}"))

    def close(self):
        try:
            self.ask("exit")
        finally:
            self.process.wait(timeout=30)


def calibrate(child_, metric, ops, target):
    number = 100
    while True:
        took = child_.sample(metric, number)
        if took >= target / 4 or number >= 10_000_000:
            return max(1, int(number * target / max(took, 1e-9))), ops
        number *= 4


def measure(children, metrics, rounds, target):
    """{(child kind, metric): [ns per op, one per round]}; metrics: (name, ops, kinds)."""
    numbers = {}
    for name, ops, kinds in metrics:
        for kind in kinds:
            numbers[(kind, name)] = calibrate(children[kind], name, ops, target)
    samples = {key: [] for key in numbers}
    for r in range(rounds):
        for name, _, kinds in metrics:
            order = kinds if r % 2 == 0 else tuple(reversed(kinds))
            for kind in order:
                number, ops = numbers[(kind, name)]
                samples[(kind, name)].append(children[kind].sample(name, number) / (number * ops) * 1e9)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="each figure once or twice: checks that it runs")
    parser.add_argument("--json", action="store_true", help="a JSON line per figure too (bench/summary.py)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    rounds, target = args.rounds or ROUNDS[mode], TARGET_S[mode]
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as workdir:
        with open(os.path.join(workdir, "file"), "w") as f:
            f.write("x")
        children = {"plain": Child("plain", workdir), "splitbrain": Child("splitbrain", workdir)}
        try:
            both, mine = ("plain", "splitbrain"), ("splitbrain",)
            outside = [(name, ops, both if name.startswith(("audit.", "open.")) else mine)
                       for name, _, ops in OUTSIDE]
            samples = measure(children, outside, rounds, target)
            children["splitbrain"].ask("enter")
            samples.update(measure(children, [(name, ops, mine) for name, _, ops in INSIDE], rounds, target))
        finally:
            for c in children.values():
                c.close()
    report(samples, rounds, args.json)


def report(samples, rounds, as_json):
    load = os.getloadavg()[0]
    print(f"bench/routing: ns per operation, CPU time, medians of {rounds} interleaved rounds (load {load:.1f})")
    print(f"  {'outside any context':<40}{'without':>10}{'with':>10}{'extra':>10}   (goal)")
    worst = {"attribute": 0.0, "audit": 0.0}
    records = []
    for label, base_metric, routed_metric, same_child, goal in PAIRS:
        base_kind = "splitbrain" if same_child else "plain"
        base = samples[(base_kind, base_metric)]
        routed = samples[("splitbrain", routed_metric)]
        extra = statistics.median(r - b for b, r in zip(base, routed))
        kind = "audit" if base_metric.startswith("audit.") else "attribute" if base_metric.startswith("attr.") else None
        if goal and kind:
            worst[kind] = max(worst[kind], extra)
        verdict = (f"≤ {GOAL_NS:.0f} {'met' if extra <= GOAL_NS else 'MISSED'}") if goal else ""
        print(f"  {label:<40}{statistics.median(base):10.1f}{statistics.median(routed):10.1f}{extra:+10.1f}   {verdict}")
        records.append({"bench": "routing", "name": label, "without_ns": statistics.median(base),
                        "with_ns": statistics.median(routed), "extra_ns": extra, "goal_ns": GOAL_NS if goal else None,
                        "rounds": rounds, "load": load})
    print(f"  {'inside a slave context':<40}{'':>10}{'ns':>10}")
    unwatched_plain = statistics.median(samples[("plain", "audit.unwatched")])
    for label, metric in [("audit hook, unwatched event", "inside.audit.unwatched"),
                          ("audit hook, watched, master's machinery", "inside.audit.machinery"),
                          ("audit hook, watched, refused (raises)", "inside.audit.refused"),
                          ("os.sep (attribute only)", "inside.attr.sep")]:
        value = statistics.median(samples[("splitbrain", metric)])
        note = f"  (+{value - unwatched_plain:.0f} over sys.audit without a hook)" if "audit" in metric else ""
        print(f"  {label:<40}{'':>10}{value:10.1f}{note}")
        records.append({"bench": "routing", "name": "inside: " + label, "with_ns": value, "rounds": rounds,
                        "load": load})
    print(f"  worst extra outside any context: attribute access {worst['attribute']:+.1f} ns, "
          f"audit hook {worst['audit']:+.1f} ns per event (goal ≤ {GOAL_NS:.0f})")
    records.append({"bench": "routing", "name": "worst", "attribute_ns": worst["attribute"],
                    "audit_ns": worst["audit"], "goal_ns": GOAL_NS, "rounds": rounds, "load": load})
    if as_json:
        for record in records:
            print(json.dumps(record))


if __name__ == "__main__":
    main()
