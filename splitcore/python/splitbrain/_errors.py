"""splitbrain's exception types, the one table from error id to exception type, and how an agent's
ERROR reply becomes a local exception.

Every message of an error splitbrain reports starts with its stable id, built by ``error()`` (the
C++ builder, ``_core.tagged``); docs/errors.md is the catalogue of ids. ``exc.code`` holds the id.
"""

import builtins

from . import _core

__all__ = [
    "AgentKeyMismatch", "AgentUnreachable", "ClientStalled", "KeyLimit", "KeyRefused", "Leased", "ModuleRefused", "NothingListening",
    "PlaceBusy", "PlaceNotHeld", "PlaceUnavailable", "UnknownHost", "ProtocolError", "RemoteError", "SessionLost", "SlaveClosed",
    "SlaveOnlyModuleError", "SpawnError",
]


class AgentUnreachable(ConnectionError):
    """The agent did not answer for the liveness timeout (``agent_unreachable``)."""


class KeyRefused(AgentUnreachable):
    """The agent refused this client's key during the CURVE handshake (``key_refused``)."""


class AgentKeyMismatch(AgentUnreachable):
    """The server at the address does not hold the agent key this client pins (``agent_key_mismatch``)."""


class NothingListening(AgentUnreachable):
    """Nothing listens on the agent's address: the connection was refused (``nothing_listening``)."""


class UnknownHost(AgentUnreachable):
    """The agent's host name does not resolve (``unknown_host``)."""


class ClientStalled(AgentUnreachable):
    """This process itself did not run for the liveness timeout while it waited (``client_stalled``)."""


class SlaveClosed(ConnectionError):
    """The connection to this slave was closed (``closed``)."""


class ProtocolError(Exception):
    """The agent refused a request: a bug on one side, or an object used after its session ended."""


class RemoteError(Exception):
    """An exception raised on a slave whose type has no local built-in twin.

    ``except splitbrain.RemoteError`` catches them all; each remote type gets its own subclass,
    named like it (``splitbrain.remote.serial.SerialException``), so handlers can be precise::

        except splitbrain.RemoteError as e:
            print(e.remote_type)        # 'serial.serialutil.SerialException'
            print(e.slave)              # 'linux-box'

    ``remote_args`` holds the remote exception's args (plain data or remote objects) and
    ``remote_traceback`` the remote traceback text, which is also attached as a note.
    """

    remote_type = "builtins.Exception"

    def __init__(self, message, *, slave=None, remote_args=(), remote_traceback=None):
        super().__init__(message)
        self.slave = slave
        self.remote_args = tuple(remote_args)
        self.remote_traceback = remote_traceback


class SessionLost(RemoteError):
    """The slave's worker process for our session died (``session_lost``)."""


class SlaveOnlyModuleError(ImportError):
    """A module that exists only on a slave was used outside that slave's context.

    An ``ImportError``, so ``from pyvisa import ResourceManager`` outside the context raises it
    (naming the slave) rather than Python's generic "cannot import name". Dunder lookups
    (``hasattr(module, "__file__")``) raise a plain ``AttributeError`` instead.
    """


class KeyLimit(PermissionError):
    """The options of this client's key in the agent's authorized_keys refuse it (``key_limit``)."""


class ModuleRefused(ImportError):
    """This client's key may not use that module on the agent (``module_refused``)."""


class Leased(PermissionError):
    """Another client holds a lease on that slave or resource (``leased``)."""


class PlaceUnavailable(ConnectionError):
    """A labgrid place could not be used: no coordinator, no such place, no agent among its resources
    (``place_unavailable``)."""


class PlaceBusy(TimeoutError):
    """A labgrid place stayed acquired by another user for the whole wait (``place_busy``)."""


class PlaceNotHeld(PermissionError):
    """The agent serves a labgrid place, and this client's user does not hold it (``place_not_held``)."""


class SpawnError(RuntimeError):
    """``splitbrain.spawn()`` could not start a private agent."""


# The one table: error id → the exception type it raises as. Ids not here are the kernel's own
# (logged, or raised by the magics as IPython's UsageError); the C++ half raises through this table.
TYPES = {
    "bad_request": ProtocolError,
    "unknown_op": ProtocolError,
    "bad_object": ProtocolError,
    "no_session": ProtocolError,
    "session_lost": SessionLost,
    "too_many_sessions": ProtocolError,
    "agent_unreachable": AgentUnreachable,
    "key_refused": KeyRefused,
    "agent_key_mismatch": AgentKeyMismatch,
    "nothing_listening": NothingListening,
    "unknown_host": UnknownHost,
    "client_stalled": ClientStalled,
    "closed": SlaveClosed,
    "timeout": TimeoutError,
    "transport": ConnectionError,
    "not_transferable": TypeError,
    "wrong_slave": TypeError,
    "slave_only_module": SlaveOnlyModuleError,
    "context": RuntimeError,
    "not_shippable": TypeError,
    "not_on_a_slave": RuntimeError,
    "unknown_slave": LookupError,
    "unknown_agent_key": ValueError,
    "bad_target": ValueError,
    "bad_key": ValueError,
    "bad_registry": ValueError,
    "spawn_failed": SpawnError,
    "arrived_late": AgentUnreachable,
    "callback_unavailable": RuntimeError,
    "local_io_in_slave_context": RuntimeError,
    "key_limit": KeyLimit,
    "module_refused": ModuleRefused,
    "leased": Leased,
    "reply_lost": ProtocolError,
    "not_run_after_failure": ProtocolError,
    "place_unavailable": PlaceUnavailable,
    "place_busy": PlaceBusy,
    "place_not_held": PlaceNotHeld,
}
_core.set_error_types(TYPES)


def message(code, detail):
    """The text of error *code* with *detail*, tagged with its id by the one builder (_core.tagged);
    ValueError if *code* is not an id of docs/errors.md."""
    return _core.tagged(code, detail)


def error(code, detail, cls=None):
    """The exception for error id *code*: an instance of TYPES[code] (or *cls*, for an id the
    kernel maps itself) whose message is ``message(code, detail)`` and whose ``.code`` is *code*."""
    exc = (cls or TYPES[code])(message(code, detail))
    exc.code = code
    return exc


# Remote types that would stop the local program if raised as themselves.
_NEVER_LOCAL = {"SystemExit", "GeneratorExit"}
_remote_classes = {}


def remote_error_class(type_name):
    """The RemoteError subclass standing for the remote type *type_name* (cached)."""
    cls = _remote_classes.get(type_name)
    if cls is None:
        module, _, qualname = type_name.rpartition(".")
        base = SessionLost if type_name == "splitbrain.SessionLost" else RemoteError
        cls = type(qualname or type_name, (base,), {
            "__module__": "splitbrain.remote." + (module or "builtins"),
            "__doc__": f"The remote exception type {type_name}.",
            "remote_type": type_name,
        })
        _remote_classes[type_name] = cls
    return cls


def _builtin_exception(type_name):
    module, _, name = type_name.rpartition(".")
    if module != "builtins" or name in _NEVER_LOCAL:
        return None
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return cls
    return None


def _rebuilt(slave_name, info, message, args):
    """The remote exception as an instance of the local class for its type (see _classes): made
    with ``cls.__new__(cls, *args)`` and the remote ``__dict__``'s plain data, as unpickling does,
    instead of calling ``__init__`` with a guessed signature."""
    from . import _classes  # noqa: PLC0415 (_classes imports this module)
    cls = _classes.exception_class(info["mro"])
    errno = info.get("errno")
    if issubclass(cls, RemoteError):
        exc = cls(message, slave=slave_name, remote_args=args, remote_traceback=info.get("tb"))
        if isinstance(exc, OSError) and errno is not None:
            exc.errno, exc.strerror = errno, info.get("strerror")
            exc.filename, exc.filename2 = info.get("filename"), info.get("filename2")
    elif issubclass(cls, OSError) and errno is not None:
        ctor = [errno, info.get("strerror") or message, info.get("filename"), None, info.get("filename2")]
        exc = cls.__new__(cls, *ctor)
        if exc.errno is None:  # a subclass with its own __init__: OSError.__new__ left it to that
            OSError.__init__(exc, *ctor)
    else:
        try:
            # Built-in exceptions written in C (UnicodeDecodeError) fill their fields in __init__.
            exc = cls(*args) if cls.__module__ == "builtins" else cls.__new__(cls, *args)
        except Exception:  # another signature: keep the text
            exc = cls.__new__(cls, message)
    extra = info.get("dict")
    if isinstance(extra, dict):
        for name, value in extra.items():
            exc.__dict__.setdefault(name, value)
    return exc


def exception_from_reply(slave_name, info):
    """The local exception for an ERROR map of the protocol (decoded by _core into a dict)."""
    type_name = info.get("type") or "builtins.Exception"
    message = info.get("msg") or ""
    args = info.get("args") or []
    code = info.get("code")
    exc = None
    if code is not None:
        cls = TYPES.get(code, ProtocolError)
        if issubclass(cls, RemoteError):
            exc = cls(message, slave=slave_name, remote_args=args)
        else:
            exc = cls(message)
        exc.code = code
    elif info.get("mro"):
        exc = _rebuilt(slave_name, info, message, args)
    else:
        cls = _builtin_exception(type_name)
        if cls is not None:
            try:
                if issubclass(cls, OSError) and info.get("errno") is not None:
                    filename, filename2 = info.get("filename"), info.get("filename2")
                    ctor = [info["errno"], info.get("strerror") or message]
                    if filename2 is not None:
                        ctor += [filename, None, filename2]
                    elif filename is not None:
                        ctor.append(filename)
                    exc = cls(*ctor)
                else:
                    exc = cls(*args)
            except Exception:  # a constructor with another signature: keep the text
                exc = cls(message)
        else:
            exc = remote_error_class(type_name)(message, slave=slave_name, remote_args=args,
                                                remote_traceback=info.get("tb"))
    tb = info.get("tb")
    if tb:
        exc.add_note(f"Remote traceback (on {slave_name}):\n{tb.rstrip()}")
    elif not isinstance(exc, (ProtocolError, KeyboardInterrupt)):
        exc.add_note(f"(raised on {slave_name})")
    return exc
