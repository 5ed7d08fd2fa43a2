"""The preflight of the registry: connect to each slave once, with a timeout, and say in one line
each whether it is up. ``splitbrain check`` (the command line) and ``%slaves --check`` (the kernel)
both run :func:`check`."""

import time

from . import _slave

__all__ = ["check", "format_rows"]


def check(names=None, timeout=3.0):
    """Probe *names* (default: every registry entry and connected slave) → one dict per name:
    ``name``, ``up`` (bool), ``address``, ``latency`` (s) and ``connect`` (s) when up, ``error`` (the
    message, on one line) when down. A slave this process has connected already is pinged, not
    reconnected; one it connects for the check is closed again."""
    rows = []
    for name in names or sorted(_slave.known_slaves()):
        start = time.perf_counter()
        with _slave._lock:
            connected = _slave._connected.get(name)
        try:
            box = connected if connected is not None else _slave.connect(name, timeout=timeout)
        except Exception as exc:  # every failure is one line: its id and message
            rows.append({"name": name, "up": False, "error": " ".join(str(exc).split())})
            continue
        try:
            latency = box.ping()
            rows.append({"name": name, "up": True, "address": box.address, "latency": latency,
                         "connect": time.perf_counter() - start})
        except Exception as exc:
            rows.append({"name": name, "up": False, "error": " ".join(str(exc).split())})
        finally:
            if box is not connected:
                box.close()
    return rows


def format_rows(rows):
    """The rows of :func:`check` as aligned lines of text."""
    width = max((len(row["name"]) for row in rows), default=0)
    lines = []
    for row in rows:
        if row["up"]:
            lines.append(f"{row['name']:<{width}}  up    {row['address']}  {row['latency'] * 1e3:.2f} ms "
                         f"(connected in {row['connect'] * 1e3:.0f} ms)")
        else:
            lines.append(f"{row['name']:<{width}}  down  {row['error']}")
    return lines
