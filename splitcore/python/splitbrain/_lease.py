"""Leases on a slave, taken from the client: ``box.lease(...)`` and what ``%slave lease`` calls.

The agent keeps the table (docs/protocol.md: ``lease``, ``unlease``, ``leases``); a lease lives as
long as the session that took it, at most ``for_`` seconds, and ends when the session ends.
"""

import re
import time

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration):
    """``7200``, ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` → seconds; None stays None."""
    if duration is None or isinstance(duration, (int, float)) and not isinstance(duration, bool):
        if duration is not None and duration <= 0:
            raise ValueError(f"a lease's duration must be positive, not {duration!r}")
        return duration
    match = _DURATION.match(str(duration).strip())
    if not match:
        raise ValueError(f"not a duration: {duration!r} (90s, 10m, 2h, 1d, or seconds)")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Lease:
    """A lease held on a slave (or on resources of it). ``release()`` ends it; as a context
    manager it ends when the block does::

        with box.lease("ASRL/dev/ttyUSB0::INSTR", for_="2h"):
            ...                      # other keys opening the port get splitbrain.Leased
    """

    def __init__(self, slave, resources, entries, shared):
        self.slave = slave
        self.resources = tuple(resources)
        self.shared = shared
        self.since = min((e["since"] for e in entries), default=time.time())
        self.until = entries[0]["until"] if entries else None
        self.released = False

    def release(self):
        """Ends the lease (idempotent)."""
        if not self.released and not self.slave.closed:
            self.slave._conn.request("unlease", {"resources": list(self.resources) or [""]})
            self.slave._known_leases = table(self.slave)
        self.released = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()
        return False

    def __repr__(self):
        what = ", ".join(self.resources) if self.resources else "the whole slave"
        until = time.strftime("%H:%M", time.localtime(self.until)) if self.until else "its session's end"
        state = "released" if self.released else f"until {until}"
        return f"<Lease on {self.slave.name}: {what}{' (shared)' if self.shared else ''}, {state}>"


def take(slave, resource=None, for_=None, shared=False):
    if resource is None:
        resources = []
    elif isinstance(resource, str):
        resources = [resource]
    else:
        resources = [str(r) for r in resource]
    fields = {"resources": resources, "shared": bool(shared)}
    duration = seconds(for_)
    if duration is not None:
        fields["for"] = float(duration)
    reply = slave._conn.request("lease", fields)
    return Lease(slave, resources, reply["leases"], bool(shared))


def table(slave):
    """Every lease on the slave's agent: resource ('' for the whole slave), holder, shared, since,
    until, mine."""
    return slave._conn.request("leases")
