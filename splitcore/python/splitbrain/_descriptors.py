"""The master's descriptor calls given a slave's descriptor act on that slave.

``fcntl`` and ``select`` are not routed: they act on this machine's descriptors. Given a
:class:`RemoteDescriptor` (``f.fileno()`` of a remote file, ``os.pipe()`` on a slave) or a remote
file itself, they would fail (the number is none of the master's: ``EBADF``, ``filedescriptor out
of range in select()``). Once the first RemoteDescriptor exists, ``fcntl.fcntl``/``ioctl``/``flock``/
``lockf`` and ``select.select`` look at their descriptor arguments: when they are the slave's, the
call is the slave's own (its ``fcntl``, its ``select``), whatever context is active, since a
descriptor belongs to one slave; otherwise the master's function runs as before. Until then
nothing is wrapped, so the master pays nothing. A name bound before (``from fcntl import fcntl``)
keeps the master's function.
"""

import functools
import sys

from . import _core
from ._proxy import RemoteDescriptor, RemoteObject

_installed = False


def _slave_of(item):
    """The slave that *item* (a descriptor, or an object with ``fileno()``) belongs to, or None."""
    if type(item) is RemoteDescriptor:
        return item.slave
    if isinstance(item, RemoteObject):
        return item._sb_slave
    return None


def _real(name):
    module = sys.modules.get(name)
    if module is None:
        module = __import__(name)
    if isinstance(module, _core.RoutedModule):
        module = _core.routed_real(module) or module
    return module


def _forward_fd(module_name, original):
    name = original.__name__

    @functools.wraps(original)
    def call(fd, *args, **kwargs):
        __tracebackhide__ = True
        slave = _slave_of(fd)
        if slave is None:
            return original(fd, *args, **kwargs)
        return getattr(slave._module(module_name), name)(fd, *args, **kwargs)

    return call


def _forward_select(original):
    @functools.wraps(original)
    def select(rlist, wlist, xlist, timeout=None):
        __tracebackhide__ = True
        lists = (list(rlist), list(wlist), list(xlist))
        slaves = {_slave_of(item) for items in lists for item in items}
        if len(slaves) != 1 or None in slaves:
            return original(rlist, wlist, xlist, timeout)
        (slave,) = slaves
        got = slave._module("select").select(*lists, timeout)
        # The slave answers with the objects it was given (the same proxies) or descriptor numbers.
        result = []
        for items, ready in zip(lists, got):
            numbers = {value for value in ready if type(value) is int}
            result.append([item for item in items
                           if any(item is value for value in ready)
                           or (type(item) is RemoteDescriptor and item.remote in numbers)])
        return tuple(result) if type(got) is tuple else result

    return select


def install():
    """Wraps the master's fcntl and select functions (once, when the first RemoteDescriptor is made)."""
    global _installed
    if _installed:
        return
    _installed = True
    try:
        fcntl = _real("fcntl")
        for name in ("fcntl", "ioctl", "flock", "lockf"):
            original = getattr(fcntl, name, None)
            if original is not None and not hasattr(original, "__wrapped__"):
                setattr(fcntl, name, _forward_fd("fcntl", original))
    except ImportError:
        pass
    select = _real("select")
    if not hasattr(select.select, "__wrapped__"):
        select.select = _forward_select(select.select)


def slave_selector():
    """A ``selectors`` class for code that splitbrain runs here with a slave's descriptors (the routed
    copy of ``subprocess.Popen``'s ``communicate``, _routing._routed_class): a slave's descriptors and
    files with a slave's ``fileno()`` are registered by it (not ``int(fileno())``, only a number), and
    ``select`` is the wrapped one above, which asks their slave."""
    import selectors  # noqa: PLC0415 (only when a routed copy is made)
    install()

    class SlaveSelector(selectors.SelectSelector):
        def _fileobj_lookup(self, fileobj):
            number = fileobj
            if not isinstance(fileobj, int):  # also a local TextIOWrapper over a remote file (text=True)
                try:
                    number = fileobj.fileno()
                except (AttributeError, TypeError, ValueError, OSError):
                    number = None
            if type(number) is RemoteDescriptor:
                return number
            return super()._fileobj_lookup(fileobj)

        def _select(self, r, w, _, timeout=None):
            import select  # noqa: PLC0415 (the real module, with its select wrapped by install())
            return select.select(r, w, [], timeout)

    return SlaveSelector
