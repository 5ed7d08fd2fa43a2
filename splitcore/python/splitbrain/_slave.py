"""Slaves: sessions with agents, reached by name, address or connection file (see _registry), or
spawned privately (see _spawn)."""

import atexit
import codecs
import itertools
import os
import posixpath
import sys
import threading
import time
import weakref

from . import _byname, _classes, _context, _core, _local, _registry, _spawn
from ._errors import AgentUnreachable, SessionLost, error, exception_from_reply
from ._proxy import (RemoteCallable, RemoteDescriptor, RemoteMethod, RemoteModule, RemoteObject, _slave_descriptors,
                     path_like_text, proxy_class)

__all__ = ["Slave", "connect", "forget", "known_slaves", "slave", "slaves", "spawn"]

DEFAULT_TIMEOUT = 5.0

# Requests through the agent's port after which a session asks for the direct connection to its
# worker (SPLITBRAIN_DIRECT unset): a second CurveZMQ handshake costs about as much CPU as ten calls
# save, so a short session (connect, a call or two, close: W8) never pays it. SPLITBRAIN_DIRECT=1
# asks in the hello itself, SPLITBRAIN_DIRECT=0 never.
DIRECT_AFTER = 8

# posixpath functions that only compute on their arguments: for a posix slave they run here.
_PURE_POSIXPATH = ("join", "split", "basename", "dirname", "splitext", "normpath", "isabs",
                   "normcase", "commonpath", "commonprefix", "splitdrive")

_lock = threading.RLock()
_connected = {}   # name → Slave (open)
_spawn_numbers = itertools.count(1)


class _ProxyRef(weakref.ref):
    """A weak reference to a proxy, with the remote object's id and how many references it stands for."""

    __slots__ = ("oid", "count")

    def __new__(cls, proxy, callback, oid):
        self = super().__new__(cls, proxy, callback)
        self.oid, self.count = oid, 1
        return self

    def __init__(self, proxy, callback, oid):
        super().__init__(proxy, callback)


class _ProxyTable:
    """One session's live proxies by remote object id, held weakly: one proxy per remote object (so
    ``is`` works), and the proxy's death releases the references it stood for (batched by the
    connection). A weak reference's callback does it rather than a ``__del__`` of the proxy, so that
    ``f.__del__()`` called by hand reaches the remote object's own, as a local object's does."""

    __slots__ = ("_slave", "_refs", "__weakref__")

    def __init__(self, slave):
        self._slave = weakref.ref(slave)  # not a cycle: a Slave dropped unclosed still closes at once
        self._refs = {}  # oid → _ProxyRef

    def get(self, oid):
        """The live proxy of *oid*, now standing for one more reference; or None."""
        ref = self._refs.get(oid)
        proxy = ref() if ref is not None else None
        if proxy is not None:
            ref.count += 1
        return proxy

    def add(self, oid, proxy):
        self._refs[oid] = _ProxyRef(proxy, self._died, oid)

    def values(self):
        return [proxy for proxy in (ref() for ref in list(self._refs.values())) if proxy is not None]

    def close(self):
        """The session is gone: its proxies' deaths release nothing."""
        self._slave = lambda: None
        self._refs = {}

    def _died(self, ref):
        if self._refs.get(ref.oid) is ref:
            del self._refs[ref.oid]
        slave = self._slave()
        if slave is None:
            return
        try:
            slave._conn.release(ref.oid, ref.count)
        except Exception:  # interpreter shutdown, closed slave: nothing left to release
            pass


class _Modules:
    """``slave.modules.os``, ``slave.modules["os.path"]``: the slave's modules, whatever the context."""

    __slots__ = ("_slave",)

    def __init__(self, slave):
        self._slave = slave

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._slave._module(name)

    def __getitem__(self, name):
        return self._slave._module(name)

    def __repr__(self):
        return f"<modules of {self._slave.name}>"


_RENEWED = "new session: the agent had lost the old one (restarted, or the session expired)"


class _LostConnection:
    """The connection of proxies from a session the agent no longer has: every use says so."""

    __slots__ = ("_message",)

    def __init__(self, message):
        self._message = message

    def release(self, oid, count):
        pass  # the objects are gone with their session

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise error("session_lost", self._message)


_warning_registries = weakref.WeakKeyDictionary()  # Slave -> {slave's file name: warnings registry}


def _warning_class(module, qualname):
    """The master's warning class of that name (in a module already loaded), else ``Warning``."""
    found = sys.modules.get(module)
    if isinstance(found, _core.RoutedModule):
        found = _core.routed_real(found)
    for part in qualname.split("."):
        found = getattr(found, part, None) if found is not None else None
    return found if isinstance(found, type) and issubclass(found, Warning) else Warning


class _LostSession:
    """What a proxy of a lost session is bound to instead of its Slave."""

    def __init__(self, slave, message):
        self.name = slave.name
        self.slave = slave
        self._methods = dict(slave._methods)
        self._conn = _LostConnection(message)

    def _module(self, name):
        raise error("session_lost", self._conn._message)

    @property
    def modules(self):
        raise error("session_lost", self._conn._message)


class Slave:
    """A connection to one agent: a machine whose os, subprocess, open, sockets, serial ports and
    VISA instruments a block of code can use.

    ``with slave:`` makes it active (routed modules act on it) until the block ends; blocks nest,
    ``splitbrain.local()`` returns to the master inside. ``slave.modules.os`` reaches its modules
    whatever is active. Remote objects stay bound to their slave.

    Attributes: ``name``, ``address``, ``platform`` (``sys.platform`` there), ``python``
    (``sys.version`` there), ``hostname``, ``pid`` (of the worker serving us), ``state``.
    """

    def __init__(self, name, address, public_key, *, timeout=DEFAULT_TIMEOUT, agent=None, place=None):
        self.name = name
        self.place = place               # the _labgrid.Place this slave holds, released when it closes
        self.address = address
        self.public_key = public_key
        self.timeout = timeout
        self.state = "connecting"
        self.latency = None
        self._agent = agent              # the _spawn.Agent this slave stops when closed, if spawned
        self._modules = {}
        self._methods = {}              # remote type name → names known to be methods
        self._proxies = _ProxyTable(self)
        self._decoders = {1: codecs.getincrementaldecoder("utf-8")("replace"),
                          2: codecs.getincrementaldecoder("utf-8")("replace")}
        self._exports = _local.Exports()  # local objects the slave holds by reference (callbacks)
        self._closed = False
        self._stale = False              # the agent answered no_session: renew before the next use
        self.sessions = 0                # sessions opened so far: more than 1 after a restart of the agent
        self._open_session()
        self._handshakes = self._conn.handshakes  # when the session was last known good
        self.state = "connected"
        self.modules = _Modules(self)

    def _open_session(self):
        client_public = client_secret = None
        if self.public_key is not None:
            client_public, client_secret = _registry.client_keys()
        session = os.urandom(16).hex()  # the session token, in every message we send
        conn = _core.Connection(self.name, self.address, self.public_key, client_public, client_secret,
                                session.encode(), float(self.timeout), self)
        # A built-in exception's error reply is raised by _core itself, as _error would make it.
        conn.raise_builtin_errors(str(self.name))
        try:
            hello = {"session": session}
            direct = os.environ.get("SPLITBRAIN_DIRECT", "")  # "0": the relay only; "1": direct at once
            if direct == "1":
                hello["direct"] = True  # a port of the worker's own, if the agent offers one
            if self.place is not None:
                hello["place"] = self.place.hello()
            if direct not in ("0", "1"):
                conn.direct_later(dict(hello, direct=True), DIRECT_AFTER)
            prefetched = None
            if self.sessions == 0:
                # The first import (os: routing itself needs it) rides with the hello: one round trip
                # for both. A renewed session skips it (_renew drops the proxies made meanwhile).
                info, prefetched = conn.request_prefetching("hello", hello, "import", {"name": "os"})
            else:
                info = conn.request("hello", hello)
        except AgentUnreachable as exc:
            conn.close()
            self.state = "unreachable"
            if self.public_key is not None and type(exc) is AgentUnreachable:
                exc.add_note(f"If the agent is running, check that this client's public key "
                             f"{client_public} is in its --authorized-keys file, and that "
                             f"{self.public_key} is its public key.")
            raise
        except BaseException:
            conn.close()
            raise
        if isinstance(info.get("clock"), int):
            conn.agent_clock(info["clock"])  # so that a request the link delays past our give-up never runs
        self._session, self._conn = session, conn
        self._prefetched = {"os": prefetched} if prefetched is not None else {}
        self.sessions += 1
        self.platform = info.get("platform")
        self.python = info.get("python")
        self.hostname = info.get("hostname")
        self.pid = info.get("pid")
        self.sep = info.get("sep")
        self.flavour = info.get("flavour")
        self.executable = info.get("executable")

    def _check_session(self):
        """Opens a new session if the agent lost ours (it restarted): after a reconnect the session
        is asked about once; a no_session answer anywhere marks it stale."""
        if not self._stale and self._conn.handshakes != self._handshakes:
            handshakes = self._conn.handshakes
            try:
                self._conn.request("stats")
            except SessionLost:
                pass  # marked stale by _error
            except Exception:
                return  # unreachable, or worse: the call that follows says what
            self._handshakes = handshakes
        if self._stale and not self._closed:
            self._renew()

    def _renew(self):
        lost = _LostSession(self, f"{self.name} ({self.address}) no longer has the session its objects lived in "
                                  f"(the agent restarted, or the session expired); objects from before the "
                                  f"restart are gone, new calls open a new session")
        old = self._conn
        self._open_session()  # raises (and keeps the old state) if the agent cannot be reached
        for proxy in self._proxies.values():
            object.__setattr__(proxy, "_sb_slave", lost)
        self._proxies.close()  # their references died with the old session
        self._proxies = _ProxyTable(self)
        self._modules.clear()
        self._exports.clear()  # the old session's proxies of them are gone with it
        old.close()
        self._stale = False
        self._handshakes = self._conn.handshakes
        self.state = _RENEWED

    # -- context -----------------------------------------------------------------------------------

    def __enter__(self):
        if self._closed:
            raise error("closed", f"{self.name} is closed")
        self._check_session()
        _context.push(self)
        return self

    def __exit__(self, *exc_info):
        _context.pop()
        if not self._closed:
            self._conn.drain()  # output of background processes that came while no call waited
        return False

    # -- what proxies and routed modules use --------------------------------------------------------

    def _module(self, name):
        self._check_session()
        module = self._modules.get(name)
        if module is None:
            if self._closed:
                raise error("closed", f"{self.name} is closed")
            info = self._prefetched.pop(name, None) or self._conn.request("import", {"name": name})
            module = RemoteModule(self, name, info)
            if name in ("os.path", "posixpath") and self.flavour == "posix":
                for function in _PURE_POSIXPATH:
                    if function in module.__dict__ or function in module._sb_lazy:
                        module.__dict__[function] = getattr(posixpath, function)
            self._modules[name] = module
        return module

    def _builtin(self, name):
        return getattr(self._module("builtins"), name)

    # -- hooks of _core.Connection -------------------------------------------------------------------

    def _unbox(self, oid, type_name, is_callable, lineage=None):
        if lineage is not None and _classes.is_exception_lineage(lineage):
            self._conn.release(oid, 1)  # the local class stands for it: nothing to hold there
            return _classes.exception_class(lineage)
        if lineage and tuple(lineage[0])[0] == "builtins":  # str, bytes, int...: the same class here
            local = _classes.twin(*lineage[0])
            if local is not None:
                self._conn.release(oid, 1)
                return local
        proxy = self._proxies.get(oid)  # one more reference it stands for
        if proxy is not None:
            return proxy
        cls = RemoteCallable if is_callable else proxy_class(type_name)
        proxy = object.__new__(cls)
        if lineage is not None:
            object.__setattr__(proxy, "_sb_lineage", lineage)
        object.__setattr__(proxy, "_sb_slave", self)
        object.__setattr__(proxy, "_sb_oid", oid)
        object.__setattr__(proxy, "_sb_type", type_name)
        self._proxies.add(oid, proxy)
        return proxy

    def _box(self, obj):
        if isinstance(obj, RemoteMethod):
            obj = obj._sb_resolve()
        elif isinstance(obj, RemoteModule):
            obj = obj._sb_proxy
        if isinstance(obj, RemoteObject):
            owner = obj._sb_slave
            if owner is self:
                self._conn.unpipe(obj._sb_oid)  # a file given to a call may be closed there (see _files)
                return obj._sb_oid
            if isinstance(owner, _LostSession) and owner.slave is self:
                raise error("session_lost", owner._conn._message)
            raise error("wrong_slave", f"a remote {obj._sb_type} of {owner.name} cannot be passed to "
                                       f"{self.name}; objects stay on the slave they came from")
        named = _byname.wire_name(obj)
        if named is not None:  # int, str, ValueError, str.lower: the slave's own, by name ("$n")
            return named
        twin = _byname.counterpart(self, obj)
        if isinstance(twin, (RemoteObject, RemoteMethod)):  # not a builtin class, which comes back as ours
            return self._box(twin)
        text = path_like_text(obj)
        if text is not None:
            return text
        return self._exports.export(obj)  # by reference: its uses there are callbacks to here

    def _local(self, eid):
        return self._exports.get(eid)

    def _callback(self, op, target, name, args, kwargs):
        result = _local.serve(op, target, name, args, kwargs)
        if RemoteDescriptor.made:  # an opener= returning the slave's os.open(...): the slave's number
            (result,), _ = _slave_descriptors(self, (result,), {})
        return result

    def _keep_error(self, exc):
        return self._exports.keep_error(exc)

    def _release_local(self, pairs):
        self._exports.release(pairs)

    def _warn(self, items):
        """The warnings the slave raised during a request, raised again here: the master's filters,
        ``assertWarns`` and ``catch_warnings`` see them (the slave keeps them all, filter "always")."""
        import warnings  # noqa: PLC0415 (loaded anyway; only when a slave warned)
        registries = _warning_registries.setdefault(self, {})
        if len(registries) > 1024:  # bounded: the "default"/"once" memory of that many files
            registries.clear()
        for module, qualname, text, filename, lineno in items:
            # one registry per slave's file, as a module's __warningregistry__: "default" shows a
            # warning once per place, as it would on one machine
            warnings.warn_explicit(text, _warning_class(module, qualname), filename, lineno,
                                   registry=registries.setdefault(filename, {}))

    def _output(self, fd, data):
        text = self._decoders[2 if fd == 2 else 1].decode(data)
        if not text:
            return
        stream = sys.stderr if fd == 2 else sys.stdout
        if stream is None:
            return
        stream.write(text)
        stream.flush()

    def _error(self, info):
        origin = info.get("origin")
        if origin is not None:  # raised by a callback here: the caller gets that very exception
            original = self._exports.take_error(origin)
            if original is not None:
                return original
        exc = exception_from_reply(self.name, info)
        code = getattr(exc, "code", None)
        if code == "no_session" and not self._closed:
            # We had a session: the agent lost it (a restart, an expiry). Say so; the next use of
            # this Slave opens a new one.
            self._stale = True
            self.state = "session lost"
            exc = error("session_lost", f"{self.name} ({self.address}) no longer has this session (the agent "
                                        f"restarted, or the session expired); objects from before the restart "
                                        f"are gone, the next call opens a new session")
            exc.slave = self.name
        elif code == "session_lost":
            self.state = "session lost"
        return exc

    # -- public ---------------------------------------------------------------------------------------

    def ping(self, timeout=None):
        """One round trip to the agent; returns its latency in seconds (also kept in ``.latency``).
        *timeout* (seconds) bounds the wait; by default the liveness timeout does."""
        start = time.perf_counter()
        try:
            self._conn.request("ping", None, timeout)
        except (AgentUnreachable, TimeoutError):
            self.state = "unreachable"
            raise
        self.latency = time.perf_counter() - start
        if self.state == "unreachable":
            self.state = "connected"
        return self.latency

    def stats(self):
        """The agent's counters for our session, e.g. ``{"objects": 3}`` (live remote objects we
        hold). Sends pending releases first."""
        self._conn.flush()
        return self._conn.request("stats")

    def lease(self, resource=None, for_=None, shared=False):
        """Lease this slave (``resource=None``) or resources on it — a VISA resource string, a serial
        port path, or a list of them — for this session: other client keys opening them get
        ``splitbrain.Leased`` naming the holder. Ends with the session, after *for_* (seconds, or
        ``"2h"``), or at ``release()``; a context manager too. ``shared=True`` lets other keys hold a
        shared lease on it as well. Raises ``Leased`` if another key holds one, ``KeyLimit`` if this
        key may not lease (the agent's authorized_keys line needs the option ``lease``)."""
        from . import _lease
        lease = _lease.take(self, resource, for_, shared)
        self._known_leases = self.leases()  # what %slaves and the lab panel show without asking again
        return lease

    def leases(self):
        """Every lease on this slave's agent: dicts of resource ('' for the whole slave), holder (the
        key's comment), shared, since and until (epoch seconds; until None: while its session lasts),
        mine."""
        from . import _lease
        return _lease.table(self)

    def run(self, fn, /, *args, **kwargs):
        """``fn(*args, **kwargs)`` on this slave in one round trip; *fn* travels as source (see _run)."""
        from . import _run  # imported on first use: ast, dis and inspect cost at import time
        return _run.run(self, fn, args, kwargs)

    def remote(self, fn):
        """Decorator: ``@box.remote`` makes *fn* run on this slave, as ``box.run(fn, ...)`` does."""
        from . import _run
        return _run.remote(self, fn)

    def cancel_all(self):
        """Interrupt every remote call a thread is waiting for (KeyboardInterrupt there and here)."""
        if not self._closed:
            self._conn.cancel_all()

    @property
    def requests(self):
        """Messages sent to the agent so far: each request is one round trip (release batches
        and cancels are sent without waiting). For tests and tuning."""
        return self._conn.requests

    @property
    def round_trips(self):
        """Replies waited for so far: requests, and pipelines of small writes that had to wait for
        their oldest replies (pipelined writes and closes themselves are not). For tests and tuning."""
        return self._conn.round_trips

    @property
    def closed(self):
        """True once :meth:`close` ran: the session is over and the slave can no longer be used."""
        return self._closed

    def close(self):
        """End the session (the agent drops our objects) and close the connection; a spawned
        agent is stopped too. Idempotent."""
        with _lock:
            if self._closed:
                return
            self._closed = True
            if _connected.get(self.name) is self:
                del _connected[self.name]
        self.state = "closed"
        try:
            self._conn.flush()
            self._conn.request("bye", None, 1.0)
        except Exception:  # the agent may be gone already; closing must still work
            pass
        self._conn.close()
        self._modules.clear()
        self._exports.clear()
        self._stop_agent()
        if self.place is not None:
            self.place.release()

    def _stop_agent(self):
        agent, self._agent = self._agent, None
        if agent is not None:
            agent.stop(timeout=5.0)

    def __repr__(self):
        where = f"{self.platform}, Python {self.python.split()[0]}" if getattr(self, "python", None) else "?"
        return f"<splitbrain.Slave {self.name} {self.address} ({where}) {self.state}>"

    def __del__(self):
        try:
            self._stop_agent()
        except Exception:
            pass


def _register(slave):
    with _lock:
        _connected[slave.name] = slave
    return slave


def connect(target, name=None, timeout=DEFAULT_TIMEOUT, save=False, wait=None):
    """Connect to an agent and return a :class:`Slave`.

    *target* is a name from the registry (``~/.config/splitbrain/slaves.json``), the path of an
    agent's connection file, or ``tcp://HOST:PORT?key=Z85`` (the agent's public key; ``?key=none``
    for a plain-text loopback agent; without ``key=`` the registry entry with that address gives
    it). *name* defaults to the registry name, the connection file's name, or ``HOST:PORT``.
    *timeout* is the liveness timeout: an agent silent that long is unreachable. *save* records
    the slave in the registry under *name*. ``place:NAME`` is a labgrid place (``LG_COORDINATOR``,
    docs/labgrid.md): reserved (waiting up to *wait* s, default 60, while another user holds it),
    acquired, and released when the slave closes.

    >>> box = splitbrain.connect("linux-box")
    >>> with box:
    ...     os.getcwd()
    """
    with _context.local():
        if _is_place(target):
            return _register(_connect_place(target, name, timeout, wait))
        address, public_key, default = _registry.resolve(target)
        slave = Slave(name or default, address, public_key, timeout=timeout)
        if save:
            _registry.save(slave.name, address, public_key)
    return _register(slave)


def _is_place(target):
    """``place:NAME``, a labgrid place (_labgrid.py, imported only then: it imports asyncio)."""
    return isinstance(target, str) and target.startswith("place:")


def _connect_place(target, name, timeout, wait):
    from . import _labgrid
    place = _labgrid.take(target, wait)
    try:
        return Slave(name or target, place.address, place.public_key, timeout=timeout, place=place)
    except BaseException:
        place.release()
        raise


def spawn(name=None, timeout=15.0, liveness=DEFAULT_TIMEOUT):
    """Start a private agent on this machine, connect to it and return the :class:`Slave`.

    The agent listens on a free loopback port with fresh keys in a private temporary directory and
    accepts only this client's key. It stops when the Slave is closed or this interpreter exits.
    The binary is ``$SPLITBRAIN_AGENT``, else ``splitbrain-agent`` next to ``sys.executable``,
    else the one on PATH. *timeout* bounds its start (``SpawnError``, the ``spawn_failed`` id,
    quoting its log), *liveness* is the Slave's liveness timeout. Meant for tests, demos and
    notebooks that try things out.
    """
    with _context.local():
        binary = _spawn.agent_binary()  # before the key pair is made: no agent, nothing written
        name = name or f"spawned-{next(_spawn_numbers)}"
        client_public, _ = _registry.client_keys()
        # A private agent is its spawner's alone: its key may lease there (to try leases out).
        agent = _spawn.Agent(authorized=[f"lease {client_public}"], exit_with=os.getpid(), binary=binary,
                             timeout=timeout)
        try:
            slave = Slave(name, agent.address, agent.public_key, timeout=liveness, agent=agent)
        except BaseException:
            agent.stop()
            raise
    return _register(slave)


def slave(name):
    """The connected slave called *name*, connected from the registry if it is not yet.
    ``LookupError`` if the name is unknown."""
    with _lock:
        found = _connected.get(name)
    if found is not None and not found.closed:
        return found
    if name in _registry.entries() or _is_place(name):
        return connect(name)
    raise error("unknown_slave", f"no slave named {name!r}")


def known_slaves():
    """Names of the connected slaves and of the registry's entries."""
    with _lock:
        names = set(_connected)
    try:
        names.update(_registry.entries())
    except ValueError:
        pass
    return sorted(names)


def slaves(ping=True):
    """One dict per known slave — name, address, platform, python, latency (s), state, leases (on
    its agent, see ``Slave.leases``) — for the kernel's ``%slaves``. Connected slaves are pinged and
    asked for their leases (``ping=False``: the last latency and the last leases known)."""
    with _lock:
        connected = dict(_connected)
    rows = []
    for name, s in sorted(connected.items()):
        if ping:
            try:
                s.ping(timeout=1.0)
            except Exception:  # the row says "unreachable"; listing must not fail
                pass
        if ping and s.state != "unreachable":
            try:
                s._known_leases = s.leases()
            except Exception:  # an agent of before leases, or one gone meanwhile: the last known
                pass
        leases = getattr(s, "_known_leases", None)
        rows.append({"name": name, "address": s.address, "platform": s.platform,
                     "python": (s.python or "").split()[0] if s.python else None,
                     "latency": s.latency, "state": s.state, "leases": leases})
    try:
        entries = _registry.entries()
    except ValueError:
        entries = {}
    for name, entry in sorted(entries.items()):
        if name not in connected:
            rows.append({"name": name, "address": entry.get("address"), "platform": None,
                         "python": None, "latency": None, "state": "not connected"})
    return rows


def forget(name):
    """Close the slave *name* if connected and remove it from the registry."""
    with _lock:
        found = _connected.get(name)
    if found is not None:
        found.close()
    removed = _registry.forget(name)
    if found is None and not removed:
        raise error("unknown_slave", f"no slave named {name!r}")


@atexit.register
def _close_all():
    with _lock:
        everyone = list(_connected.values())
    for s in everyone:
        try:
            s.close()
        except Exception:
            pass
