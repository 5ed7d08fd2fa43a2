"""What ``%slave NAME``, ``%slave local``, ``spawn``, ``connect`` and ``forget`` do, for the line
magic and the Slaves panel of the JupyterLab extension alike: each returns the one line that says
what changed, and raises ``UsageError`` for a mistake."""

import time

from IPython.core.error import UsageError

import splitbrain
from splitbrain._errors import error


def usage(detail):
    return error("usage", detail, UsageError)


def unknown_slave(name):
    known = ", ".join(sorted(splitbrain.known_slaves())) or "none yet"
    return error("unknown_slave", f"no slave named {name!r} (known: {known}); add one with "
                 f"`%slave connect {name} tcp://HOST:PORT?key=AGENT_PUB` or `%slave spawn {name}`", UsageError)


def resolve(name):
    """The connected slave called *name*, connecting it from the registry if needed."""
    try:
        return splitbrain.slave(name)
    except LookupError:
        raise unknown_slave(name) from None


def activate(name):
    """Make *name* the sticky slave of the following cells (``%slave NAME``)."""
    slave = resolve(name)
    splitbrain.activate(slave)
    return (f"cells now run with {slave.name} active ({slave.address}); "
            f"`%slave local` returns to this machine")


def activate_local():
    """Back to this machine (``%slave local``)."""
    was = splitbrain.current()
    splitbrain.activate(None)
    if was is None:
        return "cells run on this machine (no slave was active)"
    return f"cells now run on this machine; `%slave {was.name}` makes {was.name} active again"


def _needs_name(name, what):
    if not name:
        raise usage(f"{what} needs a NAME")


def spawn(name):
    _needs_name(name, "spawn")
    slave = splitbrain.spawn(name=name)
    return f"spawned {slave.name} at {slave.address}"


def connect(name, target=None):
    """Connect *target* and register it as *name*; without a target, connect the registry's
    *name* (the panel's connect button on a known slave)."""
    _needs_name(name, "connect")
    if not target:
        slave = resolve(name)
        slave.ping(timeout=1.0)  # a slave that was connected before and is down says so now
        return f"connected {slave.name} at {slave.address}"
    slave = splitbrain.connect(target, name=name, save=True)
    return f"connected {slave.name} at {slave.address}"


def forget(name):
    _needs_name(name, "forget")
    active = splitbrain.current()
    try:
        splitbrain.forget(name)
    except LookupError:
        raise unknown_slave(name) from None
    if active is not None and active.name == name:
        splitbrain.activate(None)  # the sticky slave is gone: back to this machine
        return f"forgot {name}; cells run locally again"
    return f"forgot {name}"


_held = {}  # slave name -> the Lease objects %slave lease took, for %slave unlease


def lease(name, resources=(), for_=None, shared=False):
    """Lease the slave *name*, or *resources* on it (``%slave lease NAME [RESOURCE ...]``)."""
    slave = resolve(name)
    taken = slave.lease(list(resources) or None, for_=for_, shared=shared)
    _held.setdefault(slave.name, []).append(taken)
    what = ", ".join(resources) if resources else "the whole slave"
    until = f"until {time.strftime('%H:%M', time.localtime(taken.until))}" if taken.until else "while this kernel's session lasts"
    return f"leased {what} on {slave.name}{' (shared)' if shared else ''}, {until}; `%slave unlease {name}` ends it"


def unlease(name):
    """End the leases ``%slave lease`` took on *name*."""
    slave = resolve(name)
    held = _held.pop(slave.name, [])
    for taken in held:
        taken.release()
    return f"released {len(held)} lease{'s' if len(held) != 1 else ''} on {slave.name}"
