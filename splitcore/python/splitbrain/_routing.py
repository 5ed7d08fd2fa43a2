"""Routed modules: ``os``, ``subprocess``, ``open``, ... that act on whichever slave is active.

A routed module is a ``splitbrain._core.RoutedModule`` standing in ``sys.modules`` and in the
globals of modules that imported the real one earlier. Its attribute access (C) reads the context
variable: local → the real module's attribute; a slave → ``_route_getattr`` below, which asks that
slave's copy of the module. ``builtins.open`` and ``io.open`` are replaced by :func:`open`.

Every import after splitbrain goes through the meta-path finder at the end: a module that exists
only on a slave is imported from the slave inside its context and stands in ``sys.modules`` as a
routed module without a real one (outside a slave's context it raises
:class:`SlaveOnlyModuleError`); a local module's import-time code runs with the master active; and
the standard library and the exempt packages get the real modules in their globals.

Which packages are exempt is their users' to say: splitbrain names its own (and the packaging
hooks its finder consults); the kernel names the notebook's machinery and the test suites theirs,
with :func:`exempt`.
"""

import _io
import builtins
import importlib
import importlib.abc
import importlib.machinery
import io
import sys
import sysconfig
import threading
import types

from . import _audit, _core, _files, _proxy
from ._context import current_slave
from ._context import local as _local
from ._errors import SlaveOnlyModuleError, error

# DESIGN.md's default set. The hardware libraries are routed even when absent here.
DEFAULT_ROUTED = ("os", "os.path", "subprocess", "socket", "shutil", "glob", "tempfile", "platform",
                  "pathlib", "serial", "pyvisa", "usb")
# Imported now (so their own internals keep the real modules); the rest on first local use.
_EAGER = ("os", "posixpath", "subprocess", "socket", "shutil", "glob", "tempfile", "platform", "pathlib")

# Top-level packages whose module globals never hold routed modules: machinery that must act on
# the master even while a slave is active. Third-party libraries do hold them (that is the point);
# the standard library does not, except the routed modules themselves. splitbrain's own, and the
# packaging hooks on sys.meta_path that _SlaveFinder asks for local modules; others add theirs
# with exempt(). Replaced whole, never mutated, so readers need no lock.
_exempt = frozenset({"splitbrain", "_distutils_hack", "setuptools", "pkg_resources", "pip",
                     "importlib_metadata"})

# What a function read from a routed module outside any context is (`_unlink = os.unlink` at import):
# the real one while local, the active slave's inside its context (C, routed.cpp).
_ROUTING_CALLABLES = (_core.RoutingBuiltin, _core.RoutingFunction)

_lock = threading.RLock()
_routed = {}        # routed name → RoutedModule
_by_real = {}       # id(real module) → RoutedModule, for patching globals
_slave_only = {}    # name → set of slave names it was imported from
_absent = set()     # names whose local import failed once (not retried: introspection probes often)
_DELETE = object()  # the C side passes this as the value of a delattr


def _stdlib_dirs():
    paths = sysconfig.get_paths()
    return tuple({p for p in (paths.get("stdlib"), paths.get("platstdlib")) if p})


_STDLIB = _stdlib_dirs()


# -- what routed modules do when a slave is active ------------------------------------------------

# Generators of the standard library that their caller steers while they run: `dirs[:] = [...]`
# prunes os.walk, the caller renames or removes what fwalk has not reached yet, and fwalk's
# descriptors are open only while it is suspended. Run on the slave, they would run ahead by a
# batch on copies; inside a context they run here instead, with the routed primitives (scandir,
# stat, open, close: a round trip each). Every other function of a routed module is the slave's:
# one round trip for the whole call (shutil.copytree, os.makedirs).
#
# os.spawn* run here too, with the routed posix_spawn instead of fork: a slave refuses os.fork()
# (it would fork the worker that serves the session), posix_spawn starts the program without a
# copy of the worker. One difference: a program that cannot be started raises (FileNotFoundError)
# instead of a child exiting with 127.
_SPAWN = frozenset({"spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe"})
_RUN_HERE = {"os": frozenset({"walk", "fwalk"}) | _SPAWN}
_here = {}  # (name, attr) → (real function, its copy with routed globals)


def _run_here(name, routed, attr):
    """The real module's function *attr* as a copy whose globals route (see _RUN_HERE)."""
    real_module = _load_real(name, routed)
    real = getattr(real_module, attr)
    known = _here.get((name, attr))
    if known is not None and known[0] is real:
        return known[1]
    with _lock, _local():  # read outside any context, the routed module's functions route
        namespace = _routed_namespace(real_module, routed)
        if name == "os":
            namespace["scandir"] = _scandir_in_one_round_trip(namespace["scandir"])
        if name == "os" and "_spawnvef" in namespace:
            namespace["_spawnvef"] = _spawn_without_fork(namespace, routed)
        _here[(name, attr)] = (real, namespace[attr])
        return namespace[attr]


def _routed_namespace(real_module, routed):
    """A copy of *real_module*'s globals in which its functions route: the routed modules, the routed
    module's own functions read outside any context (routing callables), and copies of its Python
    functions with these globals. Call with _lock held, outside any context."""
    source = vars(real_module)
    namespace = {}
    for key, value in source.items():
        if type(value) is type(sys):
            namespace[key] = _by_real.get(id(value), value)  # `path`: the routed os.path
        elif key.startswith("__") or isinstance(value, type) or not callable(value):
            namespace[key] = value
        else:
            namespace[key] = getattr(routed, key)
    namespace[_audit.ROUTES] = True
    selectors = sys.modules.get("selectors")
    for key, value in source.items():
        if selectors is not None and isinstance(value, type) and issubclass(value, selectors.BaseSelector):
            from ._descriptors import slave_selector  # noqa: PLC0415 (_descriptors imports _proxy)
            namespace[key] = slave_selector()  # subprocess's _PopenSelector: it waits on the slave's pipes
    for key, value in source.items():  # the module's own Python functions call each other's copies
        if type(value) is types.FunctionType and value.__globals__ is source:
            namespace[key] = _routed_function(value, namespace, source)
    return namespace


def _routed_function(function, namespace, source):
    """*function* (of the module whose globals are *source*) with *namespace* as its globals; its
    defaults that are the module's functions (`_waitpid=_waitpid`, bound at def time) route too."""
    def routed_default(value):
        if callable(value) and not isinstance(value, type):
            for key, original in source.items():
                if original is value and key in namespace:
                    return namespace[key]
        return value

    defaults = function.__defaults__
    if defaults:
        defaults = tuple(routed_default(value) for value in defaults)
    copy = types.FunctionType(function.__code__, namespace, function.__name__, defaults, function.__closure__)
    kwdefaults = function.__kwdefaults__
    copy.__kwdefaults__ = {k: routed_default(v) for k, v in kwdefaults.items()} if kwdefaults else kwdefaults
    copy.__qualname__, copy.__doc__, copy.__module__ = function.__qualname__, function.__doc__, function.__module__
    copy.__dict__.update(function.__dict__)
    return copy


# A local class derived from a class of a routed module (test_subprocess's `class RecordingPopen(
# subprocess.Popen)`, a lab script's own Popen or TemporaryDirectory), defined at import with the
# master active or inside a context (its base then the master's twin of the slave's class), would
# inherit the master's code, whose globals hold the real modules: inside a slave's context its
# inherited methods would act on the master (or be refused by the audit hook). A subclass that user
# code or a library defines derives instead from a copy of the class whose functions route, as
# _RUN_HERE's do: outside any context it is the master's code acting on the master; inside one,
# its os, open, _fork_exec, ... are the slave's, a round trip each (a Popen of such a class costs
# about fifteen). The class's __init_subclass__ (set on the routed modules' own classes that have
# Python methods) swaps the base when the subclass is made; the master's class itself is unchanged.
_COPY = "__splitbrain_routed_copy__"
_copies = {}  # (module name, qualname) → (the master's class, its routed copy)


def _routed_class(name, routed, original):
    """The routed copy of *original*, a class of the routed module *name*: a subclass of it whose
    methods (its own and those its bases of the same module define) are, inside a slave's context,
    copies with routing globals; outside, the master's class's own as they are then (_ByContext)."""
    known = _copies.get((name, original.__qualname__))
    if known is not None and known[0] is original:
        return known[1]
    real_module = _load_real(name, routed)
    with _lock, _local():
        namespace = _routed_namespace(real_module, routed)
        source = vars(real_module)
        body = {_COPY: True, "__slots__": (), "__module__": original.__module__,
                "__qualname__": original.__qualname__, "__doc__": original.__doc__}
        members = []
        for klass in reversed(original.__mro__):
            if klass.__module__ != original.__module__:
                continue
            for key, value in vars(klass).items():
                copied = _routed_member(value, namespace, source)
                if copied is not None:
                    body[key] = member = _ByContext(key, klass, value, copied)
                    members.append(member)
        copy = type(original)(original.__name__, (original,), body)
        for member in members:
            member.copy = copy
        _copies[(name, original.__qualname__)] = (original, copy)
        return copy


def _routed_member(value, namespace, source):
    if type(value) in (staticmethod, classmethod):
        function = _routed_member(value.__func__, namespace, source)
        return None if function is None else type(value)(function)
    if type(value) is types.FunctionType and value.__globals__ is source:
        return _routed_function(value, namespace, source)
    return None


class _ByContext:
    """A method of a routed copy of a class: inside a slave's context its copy with routing globals,
    unless the master's class has it replaced since (`mock.patch.object`); outside, what the master's
    class has now, so that the subclass is the master's class there."""

    __slots__ = ("name", "owner", "original", "routed", "copy")

    def __init__(self, name, owner, original, routed):
        self.name, self.owner, self.original, self.routed = name, owner, original, routed
        self.copy = None

    def __get__(self, obj, cls=None):
        slave = current_slave.get()
        if slave is not None and self.owner.__dict__.get(self.name) is self.original:
            override = _proxy.class_overrides.get((slave, (self.owner.__module__, self.owner.__qualname__), self.name))
            if override is not None:  # the master's object that was set on the slave's class (a mock)
                get = getattr(type(override), "__get__", None)
                return override if get is None else get(override, obj, cls)
            return self.routed.__get__(obj, cls)
        return getattr(super(self.copy, cls if obj is None else obj), self.name)


def _subclass_hook(name, routed, original):
    def __init_subclass__(cls, **kwargs):
        super(original, cls).__init_subclass__(**kwargs)
        if cls.__dict__.get(_COPY) or original not in cls.__bases__:
            return
        module = sys.modules.get(cls.__module__)
        if module is None or not _is_patchable(cls.__module__, module):
            return  # the standard library's and the exempt packages' subclasses act on the master
        copy = _routed_class(name, routed, original)
        try:
            cls.__bases__ = tuple(copy if base is original else base for base in cls.__bases__)
        except TypeError:  # a layout the copy cannot stand in for: the subclass keeps the master's code
            pass
    __init_subclass__.__qualname__ = f"{original.__qualname__}.__init_subclass__"
    return classmethod(__init_subclass__)


def _route_subclasses(name, routed, real_module):
    """Sets the hook above on *real_module*'s own classes with Python methods (not exceptions or ABCs:
    they do no IO of their own), unless they have an __init_subclass__ of their own. Not pathlib's,
    which stay the master's inside a context and route through their module's `os` (_LOCAL_CODE)."""
    if name in _LOCAL_CODE:
        return
    source = vars(real_module)
    for value in list(source.values()):
        if type(value) is not type or value.__module__ != real_module.__name__ or issubclass(value, BaseException):
            continue
        if "__init_subclass__" in vars(value) or _COPY in vars(value):
            continue
        if any(type(member) is types.FunctionType and member.__globals__ is source for member in vars(value).values()):
            value.__init_subclass__ = _subclass_hook(name, routed, value)


# Routed modules whose classes and functions stay the master's inside a context too: their IO goes
# through the routed `os` and `open` (_KEEP_ROUTED), so it acts on the slave, while what is pure
# computation (`p / "x"`, `p.name`, `str(p)`) costs no round trip, and the objects are the master's
# own (pickling, isinstance, `type(p) is pathlib.PosixPath`, `eval(repr(p), vars(pathlib))`). One
# round trip per IO call, as the slave's Path would take; a glob takes one per directory entry
# looked at. Only while the slave has the master's path flavour (os.name): a local WindowsPath
# cannot exist here, so a Windows slave's context gets that slave's pathlib.
_LOCAL_CODE = frozenset({"pathlib"})


# Made on the slave once per slave (our text, never the user's): a directory's entries as plain
# data, with what os.walk/fwalk ask of each (a failing test counts as False, as they treat it).
_SCAN = '''
def scan(top):
    import os
    rows = []
    with os.scandir(top) as entries:
        for e in entries:
            row = [e.name, e.path]
            for test in (e.is_dir, lambda: e.is_dir(follow_symlinks=False), e.is_symlink, e.is_file):
                try:
                    row.append(bool(test()))
                except OSError:
                    row.append(False)
            for follow in (False, True):  # fwalk's bottom-up pass asks entry.stat(follow_symlinks=False)
                try:
                    row.append(row[-1] if follow and not row[4] else e.stat(follow_symlinks=follow))
                except OSError as exc:
                    row.append((exc.errno, exc.strerror))
            rows.append(row)
    return rows
'''


class _Scanned:
    """One entry of _scandir_in_one_round_trip: what os.DirEntry answers, already asked."""

    __slots__ = ("name", "path", "_dir", "_dir_here", "_link", "_file", "_lstat", "_stat")

    def __init__(self, name, path, is_dir, is_dir_here, is_link, is_file, lstat, stat):
        self.name, self.path = name, path
        self._dir, self._dir_here, self._link, self._file = is_dir, is_dir_here, is_link, is_file
        self._lstat, self._stat = lstat, stat

    def stat(self, *, follow_symlinks=True):
        found = self._stat if follow_symlinks else self._lstat
        if isinstance(found, tuple) and not hasattr(found, "st_mode"):  # (errno, strerror) of the slave
            raise OSError(found[0], found[1], self.path)
        return found

    def is_dir(self, *, follow_symlinks=True):
        return self._dir if follow_symlinks else self._dir_here

    def is_symlink(self):
        return self._link

    def is_file(self, *, follow_symlinks=True):
        return self._file

    def __fspath__(self):
        return self.path

    def __repr__(self):
        return f"<DirEntry {self.name!r}>"


class _ScannedIterator:
    __slots__ = ("_rows",)

    def __init__(self, rows):
        self._rows = iter([_Scanned(*row) for row in rows])

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._rows)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def close(self):
        pass


def _scandir_in_one_round_trip(routed_scandir):
    """scandir for the copies of os.walk/fwalk: inside a context, one round trip for a whole
    directory (the slave's entries with their is_dir/is_symlink answers) instead of several per
    entry; outside, the real one."""
    def scandir(path="."):
        slave = current_slave.get()
        if slave is None:
            return routed_scandir(path)
        scan = slave.__dict__.get("_sb_scan")
        if scan is None:
            scan = slave._builtin("eval")("(lambda source: (exec(source, space := {}), space['scan'])[1])")(_SCAN)
            slave.__dict__["_sb_scan"] = scan
        return _ScannedIterator(scan(path))
    return scandir


def _spawn_without_fork(namespace, routed):
    """os._spawnvef for the copies of os.spawn*: the routed posix_spawn(p) and waitpid."""
    searching = (namespace["execvp"], namespace["execvpe"])
    real_os = _core.routed_real(routed)

    def _spawnvef(mode, file, args, env, func):
        if not isinstance(args, (tuple, list)):
            raise TypeError("argv must be a tuple or a list")
        if not args or not args[0]:
            raise ValueError("argv first element cannot be empty")
        spawn = namespace["posix_spawnp" if func in searching else "posix_spawn"]
        pid = spawn(file, args, routed.environ if env is None else env)  # the active slave's environ
        if mode == real_os.P_NOWAIT:
            return pid  # the caller waits, as with fork
        while True:
            _, status = namespace["waitpid"](pid, 0)
            if real_os.WIFSTOPPED(status):
                continue
            return real_os.waitstatus_to_exitcode(status)
    return _spawnvef


def _route_getattr(slave, name, routed, attr):
    __tracebackhide__ = True
    if attr in _RUN_HERE.get(name, ()):
        return _run_here(name, routed, attr)
    if name in _LOCAL_CODE and slave is not None and _same_flavour(slave):
        return getattr(_load_real(name, routed), attr)
    if slave is None:
        if attr.startswith("__") and attr.endswith("__"):
            try:
                real = _load_real(name, routed)
            except SlaveOnlyModuleError:
                # introspection (hasattr, getattr with a default) must not see an ImportError
                raise AttributeError(f"module {name!r} (only on a slave) has no attribute {attr!r} here") from None
            return getattr(real, attr)
        return getattr(_load_real(name, routed), attr)
    real = _core.routed_real(routed)
    if real is not None:
        value = getattr(real, attr, None)
        if type(value) is type and issubclass(value, tuple) and hasattr(value, "n_sequence_fields"):
            # os.stat_result and its kind: a slave's values of them arrive as the master's (the
            # boxing rebuilds them), so the class is the master's too (isinstance, pickling by name)
            return value
    try:
        module = slave._module(name)
    except ImportError:
        if attr.startswith("__") and attr.endswith("__"):
            # introspection (getattr(m, "__warningregistry__", None) over sys.modules) must not see it
            raise AttributeError(f"module {name!r} (not on {slave.name}) has no attribute {attr!r}") from None
        raise
    if attr == "__dict__":  # the remote module's own namespace, not the local proxy's
        return slave._builtin("vars")(module._sb_proxy)
    return getattr(module, attr)


def _same_flavour(slave):
    """True if *slave*'s paths are the master's kind (os.name: a constant of its imported os)."""
    return slave._module("os").name == _load_real("os", _routed["os"]).name


def _route_setattr(slave, name, routed, attr, value):
    __tracebackhide__ = True
    local = slave is None or (name in _LOCAL_CODE and _same_flavour(slave))
    target = _load_real(name, routed) if local else slave._module(name)
    if value is _DELETE:
        delattr(target, attr)
    else:
        setattr(target, attr, value)


def _route_dir(slave, name, routed):
    if name in _LOCAL_CODE and _same_flavour(slave):
        return dir(_load_real(name, routed))
    return dir(slave._module(name))


def _load_real(name, routed):
    """The local module behind *routed*, imported now if it was not yet; else SlaveOnlyModuleError."""
    real = _core.routed_real(routed)
    if real is not None:
        return real
    with _lock:
        real = _core.routed_real(routed)
        if real is not None:
            return real
        real = _import_real(name)
        if real is None:
            owners = sorted(_slave_only.get(name, ()))
            where = " or ".join(owners) if owners else "a slave"
            slave_name = owners[0] if owners else "NAME"
            exc = error("slave_only_module", f"module {name!r} exists only on {where}, not on this machine; "
                                             f"use it inside `with splitbrain.slave({slave_name!r}):` or a "
                                             f"`%%slave {slave_name}` cell")
            exc.name = name
            raise exc
        _core.set_routed_real(routed, real)
        _by_real[id(real)] = routed
        _route_subclasses(name, routed, real)
        return real


def _import_real(name):
    """Imports the real local module *name* with the real routed modules in sys.modules, so its
    own globals are the real ones too. None if it does not exist here."""
    if name in _absent:
        return None
    saved = {}
    for routed_name, routed in _routed.items():
        real = _core.routed_real(routed)
        if sys.modules.get(routed_name) is routed:
            saved[routed_name] = routed
            if real is not None:
                sys.modules[routed_name] = real
            else:
                del sys.modules[routed_name]
    try:
        return importlib.import_module(name)
    except ImportError:
        _absent.add(name)
        return None
    finally:
        for routed_name, routed in saved.items():
            sys.modules[routed_name] = routed


# -- open --------------------------------------------------------------------------------------------

def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True, opener=None):  # noqa: A001
    """``open()`` of the active slave, or the built-in ``open`` when local (splitbrain routes it)."""
    __tracebackhide__ = True
    slave = current_slave.get()
    if slave is None:
        return _io.open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    kwargs = {}
    if opener is not None:  # called back on the master: its os.open(...) inside the context acts on the slave
        kwargs["opener"] = opener
    if buffering != -1:
        kwargs["buffering"] = buffering
    if encoding is not None:
        kwargs["encoding"] = encoding
    if errors is not None:
        kwargs["errors"] = errors
    if newline is not None:
        kwargs["newline"] = newline
    if not closefd:
        kwargs["closefd"] = closefd
    return _files.open_file(slave, file, mode, kwargs)


open.__doc__ = (_io.open.__doc__ or "") + "\n\n(splitbrain: acts on the active slave inside its context.)"


class _IoModule(types.ModuleType):
    """The master's ``io`` (its class, once splitbrain is installed): ``io.open`` is splitbrain's
    :func:`open`. Replacing it inside a slave's context (``mock.patch("io.open", ...)``) replaces the
    slave's ``io.open`` too, where the code that calls it runs (tempfile's ``_io.open``): the slave
    calls the replacement back, as that code would call it locally. Putting splitbrain's back puts
    the slave's own back."""

    def __setattr__(self, name, value):
        if name == "open":
            _patch_slave_io_open(value)
        super().__setattr__(name, value)


def _patch_slave_io_open(value):
    slave = current_slave.get()
    if slave is None:
        return
    saved = slave.__dict__.get("_sb_io_open")
    if value is open:
        if saved is not None:
            del slave.__dict__["_sb_io_open"]
            setattr(slave._module("io"), "open", saved)
        return
    remote_io = slave._module("io")
    if saved is None:
        slave.__dict__["_sb_io_open"] = slave._builtin("getattr")(remote_io._sb_proxy, "open")
    setattr(remote_io, "open", value)


# -- installing ------------------------------------------------------------------------------------

def _is_patchable(module_name, module):
    top = module_name.partition(".")[0]
    if top in _exempt or module_name in _routed:
        return False
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        return module_name == "__main__"
    if path.startswith(_STDLIB) and "-packages" not in path:
        return False
    return True


def _patch_globals(targets):
    """Replaces, in the globals of already imported modules, every reference to a real module of
    *targets* (id(real) → routed) with the routed one."""
    if not targets:
        return
    for module_name, module in list(sys.modules.items()):
        if module is None or isinstance(module, _core.RoutedModule):
            continue
        try:
            if not _is_patchable(module_name, module):
                continue
            namespace = vars(module)
        except Exception:  # odd objects in sys.modules (lazy importers): leave them
            continue
        for key, value in list(namespace.items()):
            routed = targets.get(id(value))
            if routed is not None and _core.routed_real(routed) is value:
                namespace[key] = routed


def _new_routed(name, real):
    """A routed module for *name*. Without a real module yet, it carries the local spec and search
    path (found without importing), so `import pkg.sub` and `importlib.util.find_spec` work."""
    routed = _core.routed_module(name, real)
    if real is None:
        spec = None
        if "." not in name:
            try:
                spec = importlib.machinery.PathFinder.find_spec(name)
            except (ImportError, ValueError):
                spec = None
        routed.__dict__["__spec__"] = spec or importlib.machinery.ModuleSpec(name, None, is_package=True)
        routed.__dict__["__path__"] = list(spec.submodule_search_locations or ()) if spec else []
    return routed


def route(name):
    """Route the module *name* too: in ``sys.modules`` and in modules that imported it, it now acts
    on the active slave. Returns the routed module. Routing a module that is missing here is fine
    (it is then usable only inside a slave's context)."""
    with _lock:
        routed = _routed.get(name)
        if routed is not None:
            return routed
        existing = sys.modules.get(name)
        if isinstance(existing, _core.RoutedModule):
            return existing
        real = existing
        if real is None and (name in _EAGER or name == "os.path"):
            real = importlib.import_module(name)
        routed = _new_routed(name, real)
        _routed[name] = routed
        sys.modules[name] = routed
        parent, _, child = name.rpartition(".")
        if parent and parent in _routed:
            setattr(_routed[parent], child, routed)  # a routed submodule: os.path under os
        if real is not None:
            _by_real[id(real)] = routed
            _patch_globals({id(real): routed})
            _route_subclasses(name, routed, real)
        return routed


# Standard-library modules that act on the user's files with names they bound at import: those
# names keep (or get) the routed value, so `tarfile.open("x.tar", "w")` or `logging.FileHandler("run.log")`
# inside a slave's context act there (FileHandler makes its path absolute with `os`; the rotating and
# watched handlers of logging.handlers stat, rename and remove with it). Other
# standard-library names stay real (tokenize's `open`, for tracebacks).
_KEEP_ROUTED = {"tarfile": ("bltn_open", "os"), "bz2": ("_builtin_open",), "logging": ("os",), "zipfile": ("os",),
                "filecmp": ("os",), "logging.handlers": ("os",), "pathlib": ("os",)}


def _unroute_namespace(namespace):
    """Puts the real modules, functions (``from os import stat``) and ``open`` back where
    *namespace* holds routed ones."""
    keep = _KEEP_ROUTED.get(namespace.get("__name__"), ())
    for key, value in list(namespace.items()):
        if key in keep:
            continue
        if type(value) in _ROUTING_CALLABLES:
            namespace[key] = _core.unrouted(value)
        elif type(value) is _core.RoutedModule:
            real = _core.routed_real(value)
            if real is not None:
                namespace[key] = real
        elif value is open:  # `from builtins import open as _builtin_open` (tokenize)
            namespace[key] = _io.open


def exempt(*packages):
    """Declare top-level *packages* machinery that acts on the master whatever slave is active:
    their modules keep the real ``os``, ``subprocess``, ``open``... in their globals, and their
    imports run locally. For the program's own infrastructure (a kernel, a test runner), never for
    the libraries a user wants routed. Takes effect at once, also for modules of *packages* imported
    before (routing is installed when splitbrain is imported, which may be earlier)."""
    global _exempt
    for package in packages:
        if not isinstance(package, str) or not package.isidentifier():
            raise ValueError(f"exempt() takes top-level package names, not {package!r}")
    names = set(packages)
    with _lock:
        _exempt = _exempt | names
        for module_name, module in list(sys.modules.items()):
            if module_name.partition(".")[0] not in names or isinstance(module, _core.RoutedModule):
                continue
            try:
                namespace = vars(module)
            except Exception:  # odd objects in sys.modules (lazy importers): leave them
                continue
            _unroute_namespace(namespace)


def routed_names():
    """The names of the routed modules, in the order they were routed."""
    return list(_routed)


def install():
    """Routes DESIGN.md's default set, ``builtins.open`` and ``io.open``; installs the finder."""
    _core.install_router(current_slave, _route_getattr, _route_setattr, _route_dir, _DELETE)
    for name in _EAGER:
        importlib.import_module(name)
    with _lock:
        for name in DEFAULT_ROUTED:
            if name not in _routed:
                real = sys.modules.get(name)
                _routed[name] = routed = _new_routed(name, real)
                if real is not None:
                    _by_real[id(real)] = routed
        for name, routed in _routed.items():
            sys.modules[name] = routed
        setattr(_routed["os"], "path", _routed["os.path"])
        _patch_globals(dict(_by_real))
        for name, routed in _routed.items():
            real = _core.routed_real(routed)
            if real is not None:
                _route_subclasses(name, routed, real)
        builtins.open = open
        io.open = open
        if type(io) is types.ModuleType:
            io.__class__ = _IoModule
        for module_name, keys in _KEEP_ROUTED.items():  # imported before splitbrain
            namespace = getattr(sys.modules.get(module_name), "__dict__", {})
            for key in keys:
                value = namespace.get(key)
                if value is _io.open:
                    namespace[key] = open
                elif value is not None and id(value) in _by_real:
                    namespace[key] = _by_real[id(value)]
        if not any(isinstance(f, _SlaveFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _SlaveFinder())


# -- modules only a slave has -------------------------------------------------------------------------

class _SlaveLoader(importlib.abc.Loader):
    def __init__(self, routed):
        self._routed = routed

    def create_module(self, spec):
        return self._routed

    def exec_module(self, module):
        pass


def _master_only(spec):
    """True for modules whose internals always act on the master: the standard library and the
    exempt packages."""
    if spec.name.partition(".")[0] in _exempt:
        return True
    origin = spec.origin
    return isinstance(origin, str) and origin.startswith(_STDLIB) and "-packages" not in origin


class _MasterLoader:
    """Wraps the loader of a local module: its import-time code runs with the master active (so
    `import numpy` inside `with slave:` reads this machine's files and environment), and a
    master-only module gets the real modules in its globals, as if imported before splitbrain.
    Everything else is the wrapped loader's."""

    def __init__(self, loader, unroute):
        self._loader = loader
        self._unroute = unroute

    def create_module(self, spec):
        with _local():
            return self._loader.create_module(spec)

    def exec_module(self, module):
        with _local():
            self._loader.exec_module(module)
        if self._unroute:
            _unroute_namespace(vars(module))

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _SlaveFinder(importlib.abc.MetaPathFinder):
    """Finds every module imported after splitbrain (asking the other finders, in order):

    * inside a slave's context, a module this machine lacks is imported from the slave, and
      submodules of routed packages are routed too;
    * a local module's own code runs with the master active (see _MasterLoader), and the standard
      library and the exempt packages keep the real modules in their globals."""

    def find_spec(self, fullname, path=None, target=None):
        slave = current_slave.get()
        top = fullname.partition(".")[0]
        if slave is None and top in _routed:
            return None  # the real one of a routed package, imported by _import_real
        here = self._local_spec(fullname, path)
        if here is not None and (slave is None or top not in _routed):
            if here.loader is not None and hasattr(here.loader, "exec_module"):
                unroute = _master_only(here)
                if unroute or slave is not None:
                    here.loader = _MasterLoader(here.loader, unroute)
            return here
        if slave is None:
            return None
        try:
            slave._module(fullname)
        except ImportError:
            return None
        with _lock:
            routed = _routed.get(fullname)
            if routed is None:
                routed = _core.routed_module(fullname, None)
                routed.__dict__["__path__"] = list(here.submodule_search_locations or ()) if here else []
                _routed[fullname] = routed
            if here is None:
                _absent.add(fullname)
                _slave_only.setdefault(fullname, set()).add(slave.name)
        return importlib.machinery.ModuleSpec(fullname, _SlaveLoader(routed), is_package=True)

    @staticmethod
    def _local_spec(fullname, path):
        for finder in sys.meta_path:
            if isinstance(finder, _SlaveFinder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                spec = find(fullname, path)
            except (ImportError, ValueError):
                continue
            if spec is not None:
                return spec
        return None
