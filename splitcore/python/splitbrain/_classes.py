"""Classes stay classes: a remote class is matched with the master's own where it has the same one.

A class reference carries the class's MRO as ``(module, qualname)`` pairs (docs/protocol.md,
"Classes"). An exception class arrives as a local class, so ``except``, ``assertRaises``,
``pytest.raises``, ``raise`` and subclassing work: the master's own class when it has the same one
(same module and qualname, in a module already loaded or in the standard library, never an import
a peer could choose), else a mirror made once per remote class whose bases mirror the remote
bases down to the first one the master has (``serial.SerialException`` is an ``OSError``), with
``splitbrain.RemoteError`` among them. Other classes stay proxies; :func:`twin` gives the
master's copy for ``isinstance``/``issubclass`` with local objects.
"""

import builtins
import importlib
import sys
import threading

from . import _core
from ._errors import RemoteError, SessionLost

__all__ = ["exception_class", "is_exception_lineage", "twin"]

# Remote types that would stop the local program if raised as themselves.
_NEVER_LOCAL = {("builtins", "SystemExit"), ("builtins", "GeneratorExit")}
_BASE_EXCEPTION = ("builtins", "BaseException")

_lock = threading.Lock()
_mirrors = {}  # (module, qualname) → the local mirror class


def is_exception_lineage(lineage):
    return _BASE_EXCEPTION in lineage


def _module(name):
    """The master's module *name* when loading it runs no code a peer chose: already loaded (the
    real one behind a routed module), or part of the standard library. Else None."""
    module = sys.modules.get(name)
    if module is not None and isinstance(module, _core.RoutedModule):
        return _core.routed_real(module)
    if module is not None:
        return module
    if name.partition(".")[0] not in sys.stdlib_module_names:
        return None
    from ._context import local  # noqa: PLC0415 (the context module imports the routing one)
    try:
        with local():
            return importlib.import_module(name)
    except ImportError:
        return None


def twin(module, qualname):
    """The master's class module.qualname, or None."""
    if (module, qualname) in _NEVER_LOCAL:
        return None
    found = builtins if module == "builtins" else _module(module)
    for part in qualname.split("."):
        if found is None or part == "<locals>":
            return None
        found = getattr(found, part, None)
    if not isinstance(found, type):
        return None
    if found.__module__ != module or found.__qualname__ != qualname:
        return None  # an alias (socket.timeout is TimeoutError): the peer named the real class
    return found


def _mirror(lineage, index, base):
    key = lineage[index]
    with _lock:
        cls = _mirrors.get(key)
        if cls is None:
            module, qualname = key
            bases = (base,) if issubclass(base, RemoteError) else (
                (SessionLost,) if key == ("splitbrain", "SessionLost") else
                (RemoteError,) if base in (Exception, BaseException) else (RemoteError, base))
            cls = type(qualname.rpartition(".")[2], bases, {
                "__module__": "splitbrain.remote." + module,
                "__qualname__": qualname,
                "__doc__": f"The remote exception type {module}.{qualname}.",
                "remote_type": f"{module}.{qualname}",
            })
            _mirrors[key] = cls
    return cls


# Remote exception classes that are built-in ones (OSError and its kin: every failed os call), by
# lineage: their twin cannot change, so it is looked up once. Bounded: a hostile peer's lineages.
_builtin_twins = {}


def exception_class(lineage):
    """The local class for a remote exception class given by its MRO: its twin, else a mirror."""
    lineage = tuple(tuple(entry) for entry in lineage)
    known = _builtin_twins.get(lineage)
    if known is not None:
        return known
    for index, (module, qualname) in enumerate(lineage):
        local = twin(module, qualname)
        if local is not None and issubclass(local, BaseException):
            break
    else:
        local, index = Exception, len(lineage)
    for position in range(index - 1, -1, -1):
        local = _mirror(lineage, position, local)
    if index == 0 and lineage[0][0] == "builtins":
        if len(_builtin_twins) >= 256:
            _builtin_twins.clear()
        _builtin_twins[lineage] = local
    return local
