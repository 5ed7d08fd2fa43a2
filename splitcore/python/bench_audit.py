"""What the audit hook (splitbrain/_audit.py) costs per audited event.

    PYTHONPATH=build/python .venv/bin/python splitcore/python/bench_audit.py

The contract: outside any slave's context, at most 100 ns per audited event more than without
splitbrain. Printed, in ns per event: ``sys.audit`` before splitbrain is imported (no hook), after
(outside any context: the C hook reads the context variable and returns), and inside a slave's
context for an event it does not watch (one more hash lookup) and for a watched one from user code
(the Python callback walks the frames and raises local_io_in_slave_context).
"""

import os
import sys
import time
import timeit

# This file sits beside the package's sources, which lack the built _core: import the build's.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]


def per_event(statement, namespace, repeat=9, number=200_000):
    # CPU time of this process, not wall time: on a loaded machine the wall clock mostly measures
    # the other processes.
    times = timeit.repeat(statement, globals=namespace, repeat=repeat, number=number, timer=time.process_time)
    return min(times) / number * 1e9


def main():
    audit = sys.audit
    # Before splitbrain: no hook at all (one of the interpreter's own may be installed; it is in both).
    before_unwatched = per_event('audit("splitbrain.bench", 1)', {"audit": audit})
    before_watched = per_event('audit("os.listdir", ".")', {"audit": audit})

    import splitbrain
    after_unwatched = per_event('audit("splitbrain.bench", 1)', {"audit": audit})
    after_watched = per_event('audit("os.listdir", ".")', {"audit": audit})

    box = splitbrain.spawn("bench-audit")
    try:
        with box:
            inside_unwatched = per_event('audit("splitbrain.bench", 1)', {"audit": audit})

            def refused():
                try:
                    audit("os.listdir", ".")
                except RuntimeError:
                    pass
            inside_watched = per_event("refused()", {"refused": refused}, repeat=3, number=5_000)
    finally:
        box.close()

    print(f"{'audited event':<48}{'ns/event':>10}")
    print(f"{'no hook (before import splitbrain)':<48}{before_unwatched:>10.0f}")
    print(f"{'outside any context, unwatched event':<48}{after_unwatched:>10.0f}  (+{after_unwatched - before_unwatched:.0f})")
    print(f"{'outside any context, watched event (os.listdir)':<48}{after_watched:>10.0f}  (+{after_watched - before_watched:.0f})")
    print(f"{'inside a context, unwatched event':<48}{inside_unwatched:>10.0f}  (+{inside_unwatched - before_unwatched:.0f})")
    print(f"{'inside a context, watched, from user code':<48}{inside_watched:>10.0f}  (raises; +{inside_watched - before_watched:.0f})")
    worst = max(after_unwatched - before_unwatched, after_watched - before_watched)
    print(f"outside any context: +{worst:.0f} ns per audited event (contract: at most 100)")


if __name__ == "__main__":
    main()
