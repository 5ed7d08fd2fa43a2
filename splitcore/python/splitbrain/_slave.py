"""Slaves: connections to agents, by name, address or connection file, or spawned privately."""

import _io
import atexit
import codecs
import json
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from urllib.parse import unquote

from . import _context, _core, _registry
from ._errors import AgentUnreachable, KeyRefused, SlaveClosed, SpawnError, exception_from_reply
from ._proxy import RemoteCallable, RemoteMethod, RemoteModule, RemoteObject, path_like_text

__all__ = ["Slave", "connect", "forget", "known_slaves", "slave", "slaves", "spawn"]

DEFAULT_TIMEOUT = 5.0

# posixpath functions that only compute on their arguments: for a posix slave they run here.
_PURE_POSIXPATH = ("join", "split", "basename", "dirname", "splitext", "normpath", "isabs",
                   "normcase", "commonpath", "commonprefix", "splitdrive")

_lock = threading.RLock()
_connected = {}   # name → Slave (open)
_spawn_count = 0


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


class Slave:
    """A connection to one agent: a machine whose os, subprocess, open, sockets, serial ports and
    VISA instruments a block of code can use.

    ``with slave:`` makes it active (routed modules act on it) until the block ends; blocks nest,
    ``splitbrain.local()`` returns to the master inside. ``slave.modules.os`` reaches its modules
    whatever is active. Remote objects stay bound to their slave.

    Attributes: ``name``, ``address``, ``platform`` (``sys.platform`` there), ``python``
    (``sys.version`` there), ``hostname``, ``pid`` (of the worker serving us), ``state``.
    """

    def __init__(self, name, address, public_key, *, timeout=DEFAULT_TIMEOUT, process=None, workdir=None):
        self.name = name
        self.address = address
        self.public_key = public_key
        self.timeout = timeout
        self.state = "connecting"
        self.latency = None
        self._process = process
        self._workdir = workdir
        self._modules = {}
        self._methods = {}              # remote type name → names known to be methods
        self._proxies = weakref.WeakValueDictionary()
        self._decoders = {1: codecs.getincrementaldecoder("utf-8")("replace"),
                          2: codecs.getincrementaldecoder("utf-8")("replace")}
        self._closed = False
        client_public = client_secret = None
        if public_key is not None:
            client_public, client_secret = _registry.client_keys()
        self._session = os.urandom(16)
        self._conn = _core.Connection(name, address, public_key, client_public, client_secret,
                                      self._session, float(timeout), self)
        try:
            info = self._conn.request("hello", {"session": self._session.hex()})
        except AgentUnreachable as exc:
            self._conn.close()
            self.state = "unreachable"
            if public_key is not None and not isinstance(exc, KeyRefused):
                exc.add_note(f"If the agent is running, check that this client's public key "
                             f"{client_public} is in its --authorized-keys file, and that "
                             f"{public_key} is its public key.")
            raise
        except BaseException:
            self._conn.close()
            raise
        self.platform = info.get("platform")
        self.python = info.get("python")
        self.hostname = info.get("hostname")
        self.pid = info.get("pid")
        self.sep = info.get("sep")
        self.flavour = info.get("flavour")
        self.executable = info.get("executable")
        self.state = "connected"
        self.modules = _Modules(self)

    # -- context -----------------------------------------------------------------------------------

    def __enter__(self):
        if self._closed:
            raise SlaveClosed(f"[splitbrain.closed] {self.name} is closed")
        _context.push(self)
        return self

    def __exit__(self, *exc_info):
        _context.pop()
        if not self._closed:
            self._conn.drain()  # output of background processes that came while no call waited
        return False

    # -- what proxies and routed modules use --------------------------------------------------------

    def _module(self, name):
        module = self._modules.get(name)
        if module is None:
            if self._closed:
                raise SlaveClosed(f"[splitbrain.closed] {self.name} is closed")
            info = self._conn.request("import", {"name": name})
            module = RemoteModule(self, name, info)
            if name in ("os.path", "posixpath") and self.flavour == "posix":
                for function in _PURE_POSIXPATH:
                    if function in module.__dict__:
                        module.__dict__[function] = getattr(posixpath, function)
            self._modules[name] = module
        return module

    def _builtin(self, name):
        return getattr(self._module("builtins"), name)

    # -- hooks of _core.Connection -------------------------------------------------------------------

    def _unbox(self, oid, type_name, is_callable):
        proxy = self._proxies.get(oid)
        if proxy is not None:
            proxy._sb_refs += 1
            return proxy
        cls = RemoteCallable if is_callable else RemoteObject
        proxy = object.__new__(cls)
        object.__setattr__(proxy, "_sb_slave", self)
        object.__setattr__(proxy, "_sb_oid", oid)
        object.__setattr__(proxy, "_sb_type", type_name)
        object.__setattr__(proxy, "_sb_refs", 1)
        self._proxies[oid] = proxy
        return proxy

    def _box(self, obj):
        if isinstance(obj, RemoteMethod):
            obj = obj._sb_resolve()
        elif isinstance(obj, RemoteModule):
            obj = obj._sb_proxy
        if isinstance(obj, RemoteObject):
            owner = obj._sb_slave
            if owner is self:
                return obj._sb_oid
            raise TypeError(f"[splitbrain.wrong_slave] a remote {obj._sb_type} of {owner.name} cannot be "
                            f"passed to {self.name}; objects stay on the slave they came from")
        text = path_like_text(obj)
        if text is not None:
            return text
        raise TypeError(
            f"[splitbrain.not_transferable] a local {type(obj).__module__}.{type(obj).__qualname__} cannot be "
            f"sent to {self.name}: only plain data (None, bool, int, float, complex, str, bytes and "
            f"tuples, lists, dicts and sets of them) and {self.name}'s own remote objects cross")

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
        exc = exception_from_reply(self.name, info)
        if getattr(exc, "code", None) == "session_lost":
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
        self._stop_process()

    def _stop_process(self):
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __repr__(self):
        where = f"{self.platform}, Python {self.python.split()[0]}" if getattr(self, "python", None) else "?"
        return f"<splitbrain.Slave {self.name} {self.address} ({where}) {self.state}>"

    def __del__(self):
        try:
            self._stop_process()
        except Exception:
            pass


def _register(slave):
    with _lock:
        _connected[slave.name] = slave
    return slave


def _parse_target(target):
    """target → (address, public key or None, default name)."""
    if "://" in target:
        # Z85 keys hold '?', '&', '#' and '/': the key is everything after "?key=", taken literally.
        address_part, has_key, key = target.partition("?key=")
        scheme, _, netloc = address_part.partition("://")
        host, _, port = netloc.rpartition(":")
        if scheme != "tcp" or not host or not port.isdigit() or "/" in netloc or "?" in netloc:
            raise ValueError(f"[splitbrain.bad_target] {target!r}: an address is tcp://HOST:PORT[?key=Z85]")
        address = f"tcp://{netloc}"
        if has_key:
            if len(key) != 40 and "%" in key:
                key = unquote(key)
            if key in ("none", "null", ""):
                return address, None, netloc
            if not _core.is_key(key):
                raise ValueError(f"[splitbrain.bad_key] {target!r}: key= is not a Z85 CurveZMQ public key")
            return address, key, netloc
        for entry_name, entry in _registry.entries().items():
            if entry.get("address") == address:
                return address, entry.get("public_key"), entry_name
        raise ValueError(
            f"[splitbrain.unknown_agent_key] no public key for {address}: add ?key=<the agent's agent.pub> "
            f"(or ?key=none for an --insecure loopback agent), use its connection file, or register "
            f"it with splitbrain.connect(..., name=NAME, save=True)")
    if os.path.isfile(target):
        with _io.open(target, encoding="utf-8") as f:
            try:
                info = json.load(f)
            except ValueError as exc:
                raise ValueError(f"[splitbrain.bad_target] {target} is not a JSON connection file: {exc}") from None
        if not isinstance(info, dict) or not isinstance(info.get("address"), str) or "public_key" not in info:
            raise ValueError(f"[splitbrain.bad_target] {target}: a connection file holds "
                             '{"address": ..., "public_key": ...}')
        default = info.get("name") or os.path.splitext(os.path.basename(target))[0]
        return info["address"], info["public_key"], default
    entry = _registry.entries().get(target)
    if entry is None:
        known = ", ".join(sorted(_registry.entries())) or "none"
        raise LookupError(f"[splitbrain.unknown_slave] {target!r} is not a registered slave name "
                          f"(known: {known}), a connection file, or tcp://HOST:PORT")
    return entry["address"], entry.get("public_key"), target


def connect(target, name=None, timeout=DEFAULT_TIMEOUT, save=False):
    """Connect to an agent and return a :class:`Slave`.

    *target* is a name from the registry (``~/.config/splitbrain/slaves.json``), the path of an
    agent's connection file, or ``tcp://HOST:PORT?key=Z85`` (the agent's public key; ``?key=none``
    for a plain-text loopback agent; without ``key=`` the registry entry with that address gives
    it). *name* defaults to the registry name, the connection file's name, or ``HOST:PORT``.
    *timeout* is the liveness timeout: an agent silent that long is unreachable. *save* records
    the slave in the registry under *name*.

    >>> box = splitbrain.connect("linux-box")
    >>> with box:
    ...     os.getcwd()
    """
    with _context.local():
        address, public_key, default = _parse_target(target)
        slave = Slave(name or default, address, public_key, timeout=timeout)
        if save:
            _registry.save(slave.name, address, public_key)
    return _register(slave)


def _agent_binary():
    explicit = os.environ.get("SPLITBRAIN_AGENT")
    if explicit:
        return explicit
    beside = os.path.join(os.path.dirname(sys.executable), "splitbrain-agent")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("splitbrain-agent")
    if found:
        return found
    raise SpawnError("[splitbrain.spawn_failed] splitbrain-agent not found: set SPLITBRAIN_AGENT, or "
                     "install it next to this Python or on PATH")


def _log_tail(path, lines=20):
    try:
        with _io.open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def spawn(name=None, timeout=15.0, liveness=DEFAULT_TIMEOUT):
    """Start a private agent on this machine, connect to it and return the :class:`Slave`.

    The agent listens on a free loopback port with fresh keys in a private temporary directory and
    accepts only this client's key. It stops when the Slave is closed or this interpreter exits.
    The binary is ``$SPLITBRAIN_AGENT``, else ``splitbrain-agent`` next to ``sys.executable``,
    else the one on PATH. Meant for tests, demos and notebooks that try things out.
    """
    global _spawn_count
    with _context.local():
        binary = _agent_binary()
        with _lock:
            _spawn_count += 1
            number = _spawn_count
        name = name or f"spawned-{number}"
        client_public, _ = _registry.client_keys()
        workdir = tempfile.mkdtemp(prefix="splitbrain-agent-")
        try:
            keydir = os.path.join(workdir, "keys")
            authorized = os.path.join(workdir, "authorized_keys")
            connection_file = os.path.join(workdir, "connection.json")
            log_path = os.path.join(workdir, "agent.log")
            with _io.open(authorized, "w", encoding="ascii") as f:
                f.write(f"# the client that spawned this agent\n{client_public}\n")
            made = subprocess.run([binary, "keygen", keydir], capture_output=True, text=True, timeout=timeout)
            if made.returncode != 0:
                raise SpawnError(f"[splitbrain.spawn_failed] {binary} keygen failed ({made.returncode}): "
                                 f"{made.stderr.strip()}")
            command = [binary, "serve", "--listen", "tcp://127.0.0.1:*", "--key", keydir,
                       "--authorized-keys", authorized, "--connection-file", connection_file,
                       "--exit-with", str(os.getpid())]
            if sys.prefix != sys.base_prefix:
                command += ["--python", sys.prefix]
            log = _io.open(log_path, "wb")
            try:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           start_new_session=True)
            finally:
                log.close()
            deadline = time.monotonic() + timeout
            info = None
            while info is None:
                if process.poll() is not None:
                    raise SpawnError(f"[splitbrain.spawn_failed] the agent exited with {process.returncode}:\n"
                                     f"{_log_tail(log_path)}")
                if time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    raise SpawnError(f"[splitbrain.spawn_failed] the agent wrote no connection file within "
                                     f"{timeout:g} s:\n{_log_tail(log_path)}")
                try:
                    with _io.open(connection_file, encoding="utf-8") as f:
                        info = json.load(f)
                except (FileNotFoundError, ValueError):
                    time.sleep(0.01)
            try:
                slave = Slave(name, info["address"], info.get("public_key"), timeout=liveness,
                              process=process, workdir=workdir)
            except BaseException:
                process.kill()
                process.wait()
                raise
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    return _register(slave)


def slave(name):
    """The connected slave called *name*, connected from the registry if it is not yet.
    ``LookupError`` if the name is unknown."""
    with _lock:
        found = _connected.get(name)
    if found is not None and not found.closed:
        return found
    if name in _registry.entries():
        return connect(name)
    raise LookupError(f"[splitbrain.unknown_slave] no slave named {name!r}")


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
    """One dict per known slave — name, address, platform, python, latency (s), state — for the
    kernel's ``%slaves``. Connected slaves are pinged (``ping=False``: the last latency)."""
    with _lock:
        connected = dict(_connected)
    rows = []
    for name, s in sorted(connected.items()):
        if ping:
            try:
                s.ping(timeout=1.0)
            except Exception:  # the row says "unreachable"; listing must not fail
                pass
        rows.append({"name": name, "address": s.address, "platform": s.platform,
                     "python": (s.python or "").split()[0] if s.python else None,
                     "latency": s.latency, "state": s.state})
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
        raise LookupError(f"[splitbrain.unknown_slave] no slave named {name!r}")


@atexit.register
def _close_all():
    with _lock:
        everyone = list(_connected.values())
    for s in everyone:
        try:
            s.close()
        except Exception:
            pass
