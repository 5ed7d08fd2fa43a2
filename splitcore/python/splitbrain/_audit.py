"""The safety net: IO that would happen on the master inside a slave's context fails loudly.

Routing covers ``os.x``, ``subprocess.x``, ``open(...)``: names looked up at call time. It cannot
cover a function bound at import (``_close = os.close`` in a class body, a library's ``from os
import remove``) or IO done in C (``mmap``, ``ctypes``). A PEP 578 audit hook (``_core.install_audit``,
in C: outside any slave's context it costs one read of the context variable per audited event)
sees those calls while a slave is active and, when they come from user code or a library rather
than from the master's own machinery, raises the ``local_io_in_slave_context`` error naming the
call and the slave — or warns, after ``splitbrain.strict(False)``.

Who is the master's machinery: the packages declared with ``splitbrain._routing.exempt()``
(splitbrain itself, the kernel's IPython/ipykernel/zmq/jupyter_*, a test runner) and the parts of
the standard library that act for the interpreter itself (imports, tracebacks, warnings). Other
standard-library frames act for their caller: the innermost frame that is neither decides.
"""

import functools
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
    "fcntl.ioctl", "fcntl.flock", "fcntl.lockf", "pty.spawn",
})

# Standard-library packages that act for the interpreter itself, whoever called them: the import
# system (a `import x` inside a slave's context reads this machine's files), tracebacks and
# warnings (which read local source files).
_INTERPRETER = frozenset({"importlib", "_frozen_importlib", "_frozen_importlib_external", "zipimport",
                          "linecache", "tokenize", "traceback", "warnings", "inspect", "pydoc", "site",
                          "sysconfig", "encodings", "codecs", "gettext", "locale", "pkgutil", "runpy"})

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
        if top in _INTERPRETER or top in _exempt:
            return None
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
              f"function bound at import, or C code). Call it through a routed module (os.x, not a name "
              f"bound at import), run it on the slave with box.run(...), or wrap it in "
              f"`with splitbrain.local():` if the master is meant")
    if _strict:
        raise error("local_io_in_slave_context", detail)
    from ._errors import message  # noqa: PLC0415
    warnings.warn(message("local_io_in_slave_context", detail), RuntimeWarning, stacklevel=4)


def _guarded(event, function):
    """*function*, which does IO in C with no audit event, watched as if it raised *event*."""
    from ._context import current_slave  # noqa: PLC0415

    def guarded(*args, **kwargs):
        slave = current_slave.get()
        if slave is not None:
            _refuse(slave, event, args, sys._getframe(1))
        return function(*args, **kwargs)

    return functools.update_wrapper(guarded, function)


def install():
    _core.install_audit(_on_event, EVENTS)
    # dbm's backends open their files in C without an audit event (shelve.open goes through dbm.open):
    # dbm.open is watched as an event of its own (importing dbm costs ~0.2 ms; its backends are not
    # imported here, so a direct dbm.gnu.open/dbm.ndbm.open stays unwatched).
    import dbm  # noqa: PLC0415
    if not hasattr(dbm.open, "__wrapped__"):
        dbm.open = _guarded("dbm.open", dbm.open)
