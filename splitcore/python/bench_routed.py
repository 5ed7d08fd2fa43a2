"""What a routed module costs outside any slave's context, per attribute access.

    PYTHONPATH=build/python .venv/bin/python splitcore/python/bench_routed.py

The contract: ≤ 100 ns more than the real module. Printed: ns per access for the real module, the
routed one, the difference, and the same for a routed submodule (os.path) and for builtins.open's
replacement (a call, not an attribute), and the extra cost of calling a function bound at import
(its routing callable) outside any context.
"""

import os
import sys
import timeit

# This file sits beside the package's sources, which lack the built _core: import the build's.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]


def per_access(statement, namespace, accesses=10, repeat=7, number=200_000):
    times = timeit.repeat(statement, globals=namespace, repeat=repeat, number=number)
    return min(times) / (number * accesses) * 1e9


def main():
    import os as real_os
    import posixpath as real_path
    import splitbrain  # noqa: F401  (installs the routing)
    routed_os = sys.modules["os"]
    routed_path = sys.modules["os.path"]
    assert type(routed_os).__name__ == "RoutedModule", routed_os

    ten = "; ".join(["m.sep"] * 10)
    rows = []
    for label, real, routed, stmt in [
        ("os.sep", real_os, routed_os, ten),
        ("os.getcwd (attribute only)", real_os, routed_os, "; ".join(["m.getcwd"] * 10)),
        ("os.path.join (attribute only)", real_path, routed_path, "; ".join(["m.join"] * 10)),
    ]:
        base = per_access(stmt, {"m": real})
        routed_ns = per_access(stmt, {"m": routed})
        rows.append((label, base, routed_ns))
    print(f"{'access':34} {'real ns':>9} {'routed ns':>10} {'extra ns':>9}")
    worst = 0.0
    for label, base, routed_ns in rows:
        worst = max(worst, routed_ns - base)
        print(f"{label:34} {base:9.1f} {routed_ns:10.1f} {routed_ns - base:9.1f}")
    import _io
    import builtins
    opened = per_access("o(p).close()", {"o": _io.open, "p": "/dev/null"}, accesses=1, number=20_000)
    routed_open = per_access("o(p).close()", {"o": builtins.open, "p": "/dev/null"}, accesses=1, number=20_000)
    label = 'open("/dev/null").close()'
    print(f"{label:34} {opened:9.1f} {routed_open:10.1f} {routed_open - opened:9.1f}")
    # A function read from a routed module outside any context is its routing callable (routed.cpp):
    # calling it outside a context costs one read of the context variable more than the real one.
    real_getpid, bound_getpid = real_os.getpid, routed_os.getpid
    assert type(bound_getpid).__name__ == "RoutingBuiltin", bound_getpid
    calls = "; ".join(["f()"] * 10)
    real_call = per_access(calls, {"f": real_getpid})
    routed_call = per_access(calls, {"f": bound_getpid})
    label = "getpid() bound at import (call)"
    print(f"{label:34} {real_call:9.1f} {routed_call:10.1f} {routed_call - real_call:9.1f}")
    real_walk, bound_walk = real_os.walk, routed_os.walk
    walk_calls = "; ".join(["f('/nonexistent')"] * 10)
    real_py = per_access(walk_calls, {"f": real_walk})
    routed_py = per_access(walk_calls, {"f": bound_walk})
    label = "walk(x) bound at import (call)"
    print(f"{label:34} {real_py:9.1f} {routed_py:10.1f} {routed_py - real_py:9.1f}")
    print(f"worst extra per attribute access: {worst:.1f} ns (goal ≤ 100 ns): "
          f"{'OK' if worst <= 100 else 'OVER'}")


if __name__ == "__main__":
    main()
