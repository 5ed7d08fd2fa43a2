"""The safety net: IO that would happen on the master inside a slave's context fails loudly.

Routing covers ``os.x``, ``subprocess.x``, ``open(...)`` and functions read from a routed module
(routing callables, routed.cpp). It cannot cover a real function bound before splitbrain was
imported (a library's ``from os import remove`` imported earlier) or IO done in C (``mmap``,
``ctypes``). A PEP 578 audit hook (``_core.install_audit``,
in C: outside any slave's context it costs one read of the context variable per audited event)
sees those calls while a slave is active and, when they come from user code or a library rather
than from the master's own machinery, raises the ``local_io_in_slave_context`` error naming the
call and the slave — or warns, after ``splitbrain.strict(False)``.

Who is the master's machinery: the packages declared with ``splitbrain._routing.exempt()``
(splitbrain itself, the kernel's IPython/ipykernel/zmq/jupyter_*, a test runner) and the parts of
the standard library that act for the interpreter itself (imports, tracebacks, warnings). Other
standard-library frames act for their caller: the innermost frame that is neither decides.
"""

import sys
import warnings

from . import _core
from ._errors import error

# The audited events (PEP 578's table, 3.11) that touch files, processes, sockets or devices.
EVENTS = frozenset({
    "open", "os.chdir", "os.chflags", "os.chmod", "os.chown", "os.exec", "os.fork", "os.forkpty", "os.fwalk",
    "os.getxattr", "os.kill", "os.killpg", "os.link", "os.listdir", "os.listxattr", "os.lockf", "os.mkdir",
    "os.posix_spawn", "os.putenv", "os.remove", "os.removexattr", "os.rename", "os.rmdir", "os.scandir",
    "os.setxattr", "os.spawn", "os.startfile", "os.symlink", "os.system", "os.truncate", "os.unsetenv",
    "os.utime", "shutil.chown", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree",
    "shutil.make_archive", "shutil.move", "shutil.rmtree", "shutil.unpack_archive", "subprocess.Popen",
    "socket.bind", "socket.connect", "socket.sendmsg", "socket.sendto", "sqlite3.connect", "mmap.__new__",
    "ctypes.dlopen", "glob.glob", "glob.glob/2", "tempfile.mkstemp", "tempfile.mkdtemp", "fcntl.fcntl",
    "fcntl.ioctl", "fcntl.flock", "fcntl.lockf", "pty.spawn", "dbm.open",
})

# Standard-library packages that act for the interpreter itself, whoever called them: the import
# system (a `import x` inside a slave's context reads this machine's files), tracebacks and
# warnings (which read local source files).
_INTERPRETER = frozenset({"importlib", "_frozen_importlib", "_frozen_importlib_external", "zipimport",
                          "linecache", "tokenize", "traceback", "warnings", "inspect", "pydoc", "site",
                          "sysconfig", "encodings", "codecs", "gettext", "locale", "pkgutil", "runpy"})

# Marks the globals of the standard library's functions that splitbrain runs here with routed
# primitives (_routing._RUN_HERE): their audit events (os.fwalk) are not IO on the master.
ROUTES = "__splitbrain_routes__"

_strict = True
_stdlib_files = {}  # co_filename → True if it is the standard library's


def strict(on=True):
    """``splitbrain.strict(False)``: IO that would happen on the master inside a slave's context
    (see splitbrain/_audit.py) warns (``RuntimeWarning``) instead of raising
    the ``local_io_in_slave_context`` error. Returns the previous setting."""
    global _strict
    previous, _strict = _strict, bool(on)
    return previous


def _is_stdlib(filename):
    known = _stdlib_files.get(filename)
    if known is None:
        from ._routing import _STDLIB  # noqa: PLC0415 (_routing is imported after us)
        known = filename.startswith("<frozen ") or (filename.startswith(_STDLIB) and "-packages" not in filename)
        _stdlib_files[filename] = known
    return known


def _culprit(frame):
    """The frame of user code (or of a non-exempt library) on whose behalf the audited call runs,
    or None when the master's machinery does it."""
    from ._routing import _exempt  # noqa: PLC0415
    while frame is not None:
        name = frame.f_globals.get("__name__")
        top = name.partition(".")[0] if isinstance(name, str) else ""
        if top in _INTERPRETER or top in _exempt or ROUTES in frame.f_globals:
            return None  # (a routed copy of os.walk/fwalk: its own IO goes through routed primitives)
        if not _is_stdlib(frame.f_code.co_filename):
            return frame
        frame = frame.f_back
    return None


def _describe(event, args):
    shown = ", ".join(_short(a) for a in args) if isinstance(args, tuple) else _short(args)
    return f"{event}({shown})"


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _on_event(slave, event, args):
    _refuse(slave, event, args, sys._getframe(1))


def _refuse(slave, event, args, frame):
    """Raises (or warns) if *event* comes from user code or a library, *frame* the one that made it."""
    culprit = _culprit(frame)
    if culprit is None:
        return
    where = f"{culprit.f_code.co_filename}:{culprit.f_lineno}"
    detail = (f"{_describe(event, args)} would act on this machine (the master), not on {slave.name}, "
              f"although {slave.name}'s context is active (from {where}); routing does not reach it (a "
              f"function bound before splitbrain was imported, or C code). Call it through a routed module "
              f"(os.x), run it on the slave with box.run(...), or wrap it in "
              f"`with splitbrain.local():` if the master is meant")
    if _strict:
        raise error("local_io_in_slave_context", detail)
    from ._errors import message  # noqa: PLC0415
    warnings.warn(message("local_io_in_slave_context", detail), RuntimeWarning, stacklevel=4)



# dbm.gnu and dbm.ndbm (and so shelve) open their files in C, with no audit event: their C modules'
# open() raises one, "dbm.open", first. Wrapped when imported (a finder that only looks at those
# two names), so that importing splitbrain does not load them.
_DBM_MODULES = ("_gdbm", "_dbm")


_DBM_OPEN = """
def open(filename, flag="r", mode=0o666, /):
    _audit("dbm.open", filename, flag, mode)
    return _open(filename, flag, mode)
"""


def _audited_dbm(module):
    original = module.open
    if getattr(original, "_sb_audited", False):
        return
    # Compiled as the C module's own code (its file, its name): the hook looks past it, as past the
    # rest of the standard library, for the caller (splitbrain's own frames would be exempt).
    namespace = {"__name__": module.__name__, "__builtins__": __builtins__, "_audit": sys.audit, "_open": original}
    exec(compile(_DBM_OPEN, getattr(module, "__file__", None) or f"<{module.__name__}>", "exec"), namespace)
    opener = namespace["open"]
    opener.__doc__, opener._sb_audited = original.__doc__, True
    module.open = opener


class _DbmFinder:
    """On sys.meta_path: _gdbm/_dbm load as usual, then get the audited open()."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in _DBM_MODULES:
            return None
        import importlib.machinery  # noqa: PLC0415 (only for these two imports)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _DbmLoader(spec.loader)
        return spec


class _DbmLoader:
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _audited_dbm(module)


def install():
    _core.install_audit(_on_event, EVENTS)
    for name in _DBM_MODULES:
        if name in sys.modules:
            _audited_dbm(sys.modules[name])
    if not any(type(finder) is _DbmFinder for finder in sys.meta_path):
        sys.meta_path.insert(0, _DbmFinder)
