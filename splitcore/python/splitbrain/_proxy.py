"""Proxies: local stand-ins for objects that live on a slave.

Whether a value crosses by value or by reference is decided in one place, the C++ boxing
(``splitcore/box``): plain data arrives as itself; everything else arrives as a reference, for which
the owning Slave makes one of these. One proxy per remote object while it is alive, so ``is``
works; when the last one goes, the object is released on the agent (batched).

Round trips are the cost, so:

* a module's constants arrive with the import and cost nothing (``os.sep``);
* a call on a module attribute is one request (``os.path.join(a, b)``: ``call`` with a path);
* a method call on an object is one request once its type is known to have that method
  (``f.write(data)``): the first ``f.write`` asks, the answer is remembered per remote type.
"""

import io
import os
import pathlib
import sys

from . import _core
from ._errors import error

__all__ = ["RemoteBufferedIO", "RemoteCallable", "RemoteDescriptor", "RemoteIOBase", "RemoteMethod", "RemoteModule",
           "RemoteObject", "RemoteRawIO", "RemoteTextIO", "proxy_class"]

# Types of the values `getattr(obj, name)` gives for a method: calling them through a path is the
# same as calling the bound method.
_METHOD_TYPES = frozenset({
    "builtins.method", "builtins.builtin_function_or_method", "builtins.method-wrapper",
})

# Remote types whose __enter__ only checks that the object is open and returns it: `with` on them
# skips that round trip (a closed file then fails at its first operation instead).
_ENTER_RETURNS_SELF = frozenset({
    "_io.TextIOWrapper", "_io.BufferedReader", "_io.BufferedWriter", "_io.BufferedRandom", "_io.FileIO",
})

# The longest str/bytes result a module's function keeps to give the same object next time (RemoteMethod).
_LAST_KEPT = 4096

_ITER_FIRST_BATCH = 64
_ITER_MAX_BATCH = 4096

_CMP_OPS = {"__eq__": "eq", "__ne__": "ne", "__lt__": "lt", "__le__": "le", "__gt__": "gt", "__ge__": "ge"}


class RemoteObject:
    """An object on a slave. Attribute access, calls, ``with``, iteration (in batches), ``len``,
    ``bool``, indexing, comparisons, ``hash``, ``repr``/``str`` and ``dir`` all act on the remote
    object. ``repr`` names the slave: ``<remote linux-box: <_io.TextIOWrapper ...>>``.

    Passing a proxy back to its own slave passes the original object; to another slave, a
    ``TypeError`` with the ``wrong_slave`` id. A proxy has no ``__del__`` of its own (its slave's
    table of proxies releases the remote object when it dies, see _slave): ``f.__del__()`` is the
    remote object's, as a local object's is.
    """

    __slots__ = ("_sb_slave", "_sb_oid", "_sb_type", "__weakref__")

    def __new__(cls, *args, **kwargs):
        # `type(remote_obj)()` fails as the remote type's own constructor would for most (test_os's
        # `type(os.scandir())()`); splitbrain makes proxies with object.__new__ (_slave.Slave._unbox).
        raise TypeError(f"cannot create {cls.__name__!r} instances: a proxy stands for an object on a slave; "
                        f"make the object there (a call of a remote class) instead")

    def __getattr__(self, name):
        __tracebackhide__ = True  # IPython and pytest leave these frames out of tracebacks
        if name.startswith("_sb_"):
            raise AttributeError(name)
        if name == "fileno":
            return _Fileno(self)
        slave = self._sb_slave
        if name == "write":
            facts = slave._conn.piped(self._sb_oid)
            if facts is not None:  # small writes sent without waiting (see _files)
                return _PipelinedWrite(self, facts)
        methods = slave._methods.get(self._sb_type)
        if methods is not None and name in methods:
            return RemoteMethod(self, name)
        value = slave._conn.request("getattr", {"o": self._sb_oid, "name": name})
        if type(value) is RemoteCallable and value._sb_type in _METHOD_TYPES:
            slave._methods.setdefault(self._sb_type, set()).add(name)
        return value

    def __setattr__(self, name, value):
        __tracebackhide__ = True
        if name.startswith("_sb_"):
            object.__setattr__(self, name, value)
        else:
            self._sb_slave._conn.request("setattr", {"o": self._sb_oid, "name": name, "v": value})
            _note_override(self, name, value)

    def __delattr__(self, name):
        __tracebackhide__ = True
        self._sb_slave._conn.request("delattr", {"o": self._sb_oid, "name": name})
        _note_override(self, name, None)

    def __repr__(self):
        __tracebackhide__ = True
        try:
            text = self._sb_slave._conn.request("repr", {"o": self._sb_oid})
        except Exception as exc:  # a repr must not fail: say what we know
            text = f"<{self._sb_type} object, repr failed: {type(exc).__name__}>"
        return f"<remote {self._sb_slave.name}: {text}>"

    def __str__(self):
        __tracebackhide__ = True
        return self._sb_slave._conn.request("str", {"o": self._sb_oid})

    def __dir__(self):
        __tracebackhide__ = True
        return self._sb_slave._conn.request("dir", {"o": self._sb_oid})

    def __len__(self):
        __tracebackhide__ = True
        return self._sb_slave._conn.request("len", {"o": self._sb_oid})

    def __bool__(self):
        __tracebackhide__ = True
        return self._sb_slave._conn.request("bool", {"o": self._sb_oid})

    def __hash__(self):
        __tracebackhide__ = True
        return self._sb_slave._conn.request("hash", {"o": self._sb_oid})

    def __getitem__(self, key):
        __tracebackhide__ = True
        return self._sb_slave._conn.request("getitem", {"o": self._sb_oid, "k": key})

    def __setitem__(self, key, value):
        __tracebackhide__ = True
        self._sb_slave._conn.request("setitem", {"o": self._sb_oid, "k": key, "v": value})

    def __delitem__(self, key):
        __tracebackhide__ = True
        self._sb_slave._conn.request("delitem", {"o": self._sb_oid, "k": key})

    def __contains__(self, item):
        __tracebackhide__ = True
        return bool(self._sb_slave._conn.request(
            "call", {"o": self._sb_oid, "path": ["__contains__"], "a": (item,)}))

    def __iter__(self):
        conn = self._sb_slave._conn
        batch = _ITER_FIRST_BATCH
        reply = conn.request("iter", {"o": self._sb_oid, "n": batch})
        iterator = reply.get("it")
        yield from reply["items"]
        done = reply["done"]
        while not done and iterator is not None:
            batch = min(batch * 4, _ITER_MAX_BATCH)
            reply = conn.request("next", {"o": iterator._sb_oid, "n": batch})
            yield from reply["items"]
            done = reply["done"]

    def __next__(self):
        __tracebackhide__ = True
        return self._sb_slave._conn.request("call", {"o": self._sb_oid, "path": ["__next__"]})

    def __enter__(self):
        __tracebackhide__ = True
        if self._sb_type in _ENTER_RETURNS_SELF:
            return self
        return self._sb_slave._conn.request("enter", {"o": self._sb_oid})

    def __exit__(self, exc_type, exc, tb):
        __tracebackhide__ = True
        slave = self._sb_slave
        facts = slave._conn.piped(self._sb_oid) if self._sb_type in _ENTER_RETURNS_SELF else None
        if facts is not None and not facts.writable:  # a file only read: its close is pipelined (see _files)
            slave._conn.pipe_close(self._sb_oid, "call", {"o": self._sb_oid, "path": ["close"]})
            return False
        described = None if exc_type is None else [f"{exc_type.__module__}.{exc_type.__qualname__}", str(exc)]
        return bool(self._sb_slave._conn.request("exit", {"o": self._sb_oid, "exc": described}))

    def __fspath__(self):
        __tracebackhide__ = True
        try:
            return self._sb_slave._conn.request("call", {"o": self._sb_oid, "path": ["__fspath__"]})
        except AttributeError:  # what os.fspath says of an object that is not path-like
            raise TypeError(f"expected str, bytes or os.PathLike object, not remote {self._sb_type}") from None

    def __reduce__(self):
        raise error("not_transferable", f"{self!r} lives on {self._sb_slave.name}; remote objects cannot be "
                                        "pickled")


# (slave, (module, qualname) of a remote class, attribute) → the master's object set there (`mock.patch.object(
# subprocess.Popen, "_wait")` inside a context): what a local subclass's routed copy of that class finds for the
# attribute inside that slave's context, as an instance of the slave's class would (_routing._ByContext).
class_overrides = {}


def _note_override(proxy, name, value):
    lineage = getattr(proxy, "_sb_lineage", None)
    if not lineage:
        return
    key = (proxy._sb_slave, tuple(lineage[0]), name)
    if value is None or isinstance(value, (RemoteObject, RemoteMethod, RemoteModule)):
        class_overrides.pop(key, None)  # put back, or the slave's own object: the copy's method again
    else:
        class_overrides[key] = value


def _make_compare(op):
    def compare(self, other):
        __tracebackhide__ = True
        return self._sb_slave._conn.request("cmp", {"o": self._sb_oid, "cmp": op, "v": other})
    return compare


for _dunder, _op in _CMP_OPS.items():
    setattr(RemoteObject, _dunder, _make_compare(_op))
    getattr(RemoteObject, _dunder).__name__ = _dunder


def _make_operator(dunder, arity):
    path = [dunder]

    def operator(self, *other):
        __tracebackhide__ = True
        try:
            result = self._sb_slave._conn.request("call", {"o": self._sb_oid, "path": path, "a": other})
        except AttributeError:  # the remote type lacks it: let Python try the fallbacks
            if arity:
                return NotImplemented
            raise TypeError(f"remote {self._sb_type} object does not support {dunder}") from None
        if type(result) is RemoteObject and result._sb_type == "builtins.NotImplementedType":
            return NotImplemented
        return result
    operator.__name__ = dunder
    return operator


# Arithmetic and friends are calls of the remote object's own methods (one round trip each):
# `remote_path / "x"` on a slave's pathlib.Path, `counter + other` on a remote Counter.
for _name in ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "pow", "lshift", "rshift",
              "and", "or", "xor"):
    for _dunder in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        setattr(RemoteObject, _dunder, _make_operator(_dunder, 1))
for _dunder in ("__neg__", "__pos__", "__abs__", "__invert__", "__int__", "__float__", "__index__",
                "__round__"):
    setattr(RemoteObject, _dunder, _make_operator(_dunder, 0))


class RemoteIOBase(RemoteObject):
    """A remote object whose class is one of the master's io classes (a file, a socket's makefile(),
    ``tempfile.SpooledTemporaryFile``): to local code it is one too (``isinstance(f, io.IOBase)``,
    ``io.BufferedIOBase``, ``io.TextIOBase``, ``io.RawIOBase``, registered below), and, as a local
    file, no ``os.PathLike`` (C code such as numpy's tells a path from a file by that)."""

    __slots__ = ()
    __fspath__ = None  # os.PathLike's check: a class that sets it to None is none


class RemoteRawIO(RemoteIOBase):
    __slots__ = ()


class RemoteBufferedIO(RemoteIOBase):
    __slots__ = ()


class RemoteTextIO(RemoteIOBase):
    __slots__ = ()


for _abc, _proxy_cls in ((io.IOBase, RemoteIOBase), (io.RawIOBase, RemoteRawIO), (io.BufferedIOBase, RemoteBufferedIO),
                         (io.TextIOBase, RemoteTextIO)):
    _abc.register(_proxy_cls)

_IO_PROXIES = ((io.TextIOBase, RemoteTextIO), (io.BufferedIOBase, RemoteBufferedIO), (io.RawIOBase, RemoteRawIO),
               (io.IOBase, RemoteIOBase))
_proxy_classes = {}  # remote type name → the proxy class of its objects


def proxy_class(type_name):
    """The proxy class for a slave's object of type *type_name* (``module.qualname``): an io one when
    the master has that class (in a module already loaded: nothing is imported for it) and it is an
    ``io.IOBase``, else RemoteObject. Decided once per type."""
    cls = _proxy_classes.get(type_name)
    if cls is not None:
        return cls
    cls = RemoteObject
    module_name, _, qualname = type_name.rpartition(".")
    module = sys.modules.get(module_name)
    if isinstance(module, _core.RoutedModule):  # tempfile: the real one behind it
        module = _core.routed_real(module)
    local = getattr(module, qualname, None) if module is not None else None
    if isinstance(local, type) and issubclass(local, io.IOBase) and local.__qualname__ == qualname:
        cls = next(proxy for abc, proxy in _IO_PROXIES if issubclass(local, abc))
    if len(_proxy_classes) < 4096:  # bounded: a slave may make any number of classes
        _proxy_classes[type_name] = cls
    return cls


class RemoteCallable(RemoteObject):
    """A callable object on a slave (a function, class, bound method).

    A remote class answers ``isinstance``/``issubclass`` (Python asks the type of the class, this
    one): with an object or class of the same slave, the slave answers (one round trip, then
    remembered per remote type); with a local one, the master's twin of the class (same module and
    qualname, see _classes) does, and without a twin the answer is False.
    """

    __slots__ = ("_sb_lineage", "_sb_checks")

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        if RemoteDescriptor.made:
            args, kwargs = _slave_descriptors(self._sb_slave, args, kwargs)
        return self._sb_slave._conn.request(
            "call", {"o": self._sb_oid, "a": args, "kw": kwargs or None})


    def _sb_check(self, function, other, key):
        __tracebackhide__ = True
        lineage = getattr(self, "_sb_lineage", None)
        if lineage is None:
            raise TypeError(f"{function}() arg 2 must be a type, a tuple of types, or a union, not remote "
                            f"{self._sb_type}")
        if isinstance(other, RemoteMethod):
            other = other._sb_resolve()
        if isinstance(other, RemoteObject):
            if other._sb_slave is not self._sb_slave:
                return False
            try:
                checks = self._sb_checks
            except AttributeError:
                checks = {}
                object.__setattr__(self, "_sb_checks", checks)
            key = (function, key(other))
            found = checks.get(key)
            if found is None:
                found = checks[key] = bool(self._sb_slave._builtin(function)(other, self))
            return found
        from ._classes import twin  # noqa: PLC0415 (_classes needs _errors, which needs nothing here)
        local = twin(*lineage[0]) if lineage else None
        if local is None:
            return False
        return isinstance(other, local) if function == "isinstance" else (
            isinstance(other, type) and issubclass(other, local))

    @property
    def __signature__(self):
        __tracebackhide__ = True
        return remote_signature(self)

    def _sb_twin(self):
        """The master's class of the same module and qualified name (see _classes), or None."""
        lineage = getattr(self, "_sb_lineage", None)
        if not lineage:
            return None
        from ._classes import twin  # noqa: PLC0415 (_classes needs _errors, which needs nothing here)
        return twin(*lineage[0])

    def __mro_entries__(self, bases):
        """``class A(os.PathLike)`` inside a context: a local class cannot derive from a remote one,
        so it derives from the master's twin (the same code), or says why not."""
        __tracebackhide__ = True
        local = self._sb_twin()
        if local is None:
            raise TypeError(f"a local class cannot derive from remote {self!r}: the master has no class of "
                            f"that module and name; define the class on the slave (box.run) instead")
        return (local,)

    def __getitem__(self, key):
        """``os.PathLike[bytes]``: of a class the master has too, the master's generic alias."""
        __tracebackhide__ = True
        local = self._sb_twin()
        if local is not None:
            return local[key]
        return RemoteObject.__getitem__(self, key)

    def __instancecheck__(self, instance):
        __tracebackhide__ = True
        return self._sb_check("isinstance", instance, lambda other: other._sb_type)

    def __subclasscheck__(self, subclass):
        __tracebackhide__ = True
        return self._sb_check("issubclass", subclass, lambda other: other._sb_oid)


_set_slot = object.__setattr__


class RemoteMethod:
    """``obj.name`` on a slave, not fetched yet: calling it is one request (``call`` with a path).

    Anything else — its attributes, its repr, passing it as a value — fetches the real remote
    attribute first (one round trip, then remembered).
    """

    __slots__ = ("_sb_owner", "_sb_name", "_sb_path", "_sb_resolved", "_sb_last")

    def __init__(self, owner, name):
        # Straight into the slots: a module's import makes one per callable (213 for os), and going
        # through __setattr__ below tripled the cost of a session's first import (issue 11 point 4).
        _set_slot(self, "_sb_owner", owner)
        _set_slot(self, "_sb_name", name)
        _set_slot(self, "_sb_path", [name])
        _set_slot(self, "_sb_resolved", None)
        _set_slot(self, "_sb_last", None)

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        resolved = self._sb_resolved
        if resolved is not None:  # fetched (pinned before a replacement): it, not what the name is now
            return resolved(*args, **kwargs)
        owner = self._sb_owner
        if RemoteDescriptor.made:
            if type(owner) is RemoteModule:
                _refuse_c_view(owner, self._sb_name, args)
            args, kwargs = _slave_descriptors(owner._sb_slave, args, kwargs)
        result = owner._sb_slave._conn.request(
            "call", {"o": owner._sb_oid, "path": self._sb_path, "a": args, "kw": kwargs or None})
        if type(result) in (str, bytes) and type(owner) is RemoteModule:
            # A module's function that answers what it answered last time gives the same object, as a
            # local one returning what it keeps does (`tempfile.gettempdir() is tempfile.gettempdir()`).
            last = self._sb_last
            if type(last) is type(result) and last == result:
                return last
            object.__setattr__(self, "_sb_last", result if len(result) <= _LAST_KEPT else None)
        return result

    def _sb_resolve(self):
        __tracebackhide__ = True
        if self._sb_resolved is None:
            owner = self._sb_owner
            self._sb_resolved = owner._sb_slave._conn.request(
                "getattr", {"o": owner._sb_oid, "name": self._sb_name})
        return self._sb_resolved

    @property
    def _sb_slave(self):
        return self._sb_owner._sb_slave

    @property
    def __signature__(self):
        __tracebackhide__ = True
        return remote_signature(self._sb_resolve())

    def __getattr__(self, name):
        __tracebackhide__ = True
        if name.startswith("_sb_"):
            raise AttributeError(name)
        return getattr(self._sb_resolve(), name)

    def __setattr__(self, name, value):  # `mock.patch.object(subprocess.Popen, "_wait")` sets it there
        __tracebackhide__ = True
        if name.startswith("_sb_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._sb_resolve(), name, value)

    def __delattr__(self, name):
        __tracebackhide__ = True
        if name.startswith("_sb_"):
            object.__delattr__(self, name)
        else:
            delattr(self._sb_resolve(), name)

    def __repr__(self):
        __tracebackhide__ = True
        return repr(self._sb_resolve())

    def __dir__(self):
        __tracebackhide__ = True
        return dir(self._sb_resolve())

    def __mro_entries__(self, bases):
        __tracebackhide__ = True
        resolved = self._sb_resolve()
        if isinstance(resolved, RemoteCallable):
            return resolved.__mro_entries__(bases)
        return (resolved,)

    def __getitem__(self, key):
        __tracebackhide__ = True
        return self._sb_resolve()[key]

    def __instancecheck__(self, instance):
        __tracebackhide__ = True
        return isinstance(instance, self._sb_resolve())

    def __subclasscheck__(self, subclass):
        __tracebackhide__ = True
        return issubclass(subclass, self._sb_resolve())

    def __eq__(self, other):
        __tracebackhide__ = True
        if isinstance(other, RemoteMethod):
            other = other._sb_resolve()
        return self._sb_resolve() == other

    def __hash__(self):
        __tracebackhide__ = True
        return hash(self._sb_resolve())


class _RemoteInit:
    """``__init__`` of a proxy is the remote object's (``subprocess.Popen.__init__.__code__.co_argcount``,
    ``inspect`` of a remote class's constructor), not the proxy class's own, which Python would find
    first. While a proxy is being made (its fields not set yet), and read from the class, it is ours."""

    def __init__(self, local, field):
        self._local = local
        self._field = field  # the slot that is set once the proxy is made (its member descriptor)

    def __get__(self, obj, cls=None):
        __tracebackhide__ = True
        if obj is None:
            return self._local
        try:
            self._field.__get__(obj)
        except AttributeError:  # being constructed
            return self._local.__get__(obj, cls)
        if isinstance(obj, RemoteMethod):
            return obj._sb_resolve().__init__
        return obj._sb_slave._conn.request("getattr", {"o": obj._sb_oid, "name": "__init__"})


RemoteCallable.__init__ = _RemoteInit(object.__init__, RemoteObject.__dict__["_sb_oid"])
RemoteMethod.__init__ = _RemoteInit(RemoteMethod.__init__, RemoteMethod.__dict__["_sb_owner"])


class _PipelinedWrite(RemoteMethod):
    """``write`` of a remote file whose small writes are pipelined (see _files)."""

    __slots__ = ("_sb_facts",)

    def __init__(self, owner, facts):
        super().__init__(owner, "write")
        self._sb_facts = facts

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        from ._files import pipelined_write  # noqa: PLC0415 (_files is imported by _routing, after us)
        written = pipelined_write(self._sb_owner, self._sb_facts, args, kwargs)
        if written is not None:
            return written
        return super().__call__(*args, **kwargs)


class RemoteModule:
    """A module on a slave: ``slave.modules.os``. Constants came with the import (no round trip);
    callables are :class:`RemoteMethod` (one round trip per call); other attributes are fetched.

    Setting an attribute sets it on the slave's module.
    """

    def __init__(self, slave, name, info):
        d = self.__dict__
        d["_sb_slave"] = slave
        d["_sb_name"] = name
        d["_sb_proxy"] = info["mod"]
        d["_sb_submodules"] = frozenset(info.get("modules") or ())
        d.update(info.get("consts") or {})
        # The callables' RemoteMethods are made at their first use (__getattr__), not here: os has
        # 213, and a session's first import made them all while its connect waited (issue 11 point 4).
        d["_sb_lazy"] = set(info.get("callables") or ())
        exceptions = info.get("exceptions") or ()
        if exceptions:
            from ._classes import exception_class  # noqa: PLC0415 (_classes imports _errors, as we do)
            for attr, lineage in zip(exceptions[::2], exceptions[1::2]):
                d[attr] = exception_class(lineage)

    # RemoteMethod's owner protocol
    @property
    def _sb_oid(self):
        return self._sb_proxy._sb_oid

    def __getattr__(self, name):
        __tracebackhide__ = True
        if name.startswith("_sb_"):
            raise AttributeError(name)
        if name in self._sb_lazy:  # a callable the import named: its RemoteMethod, made once
            maker = _DescriptorMethod if name in _DESCRIPTOR_RESULTS.get(self._sb_name, ()) else RemoteMethod
            method = self.__dict__[name] = maker(self, name)
            return method
        if name in self._sb_submodules:
            try:
                module = self._sb_slave._module(f"{self._sb_name}.{name}")
            except ImportError:  # a module the module imported (subprocess.os), not a submodule
                value = getattr(self._sb_proxy, name)
                module_name = getattr(value, "__name__", None) if isinstance(value, type(os)) else None
                return self._sb_slave._module(module_name) if module_name else value
            self.__dict__[name] = module
            return module
        return getattr(self._sb_proxy, name)

    def __setattr__(self, name, value):
        __tracebackhide__ = True
        self._sb_pin(name)
        self._sb_slave._conn.request("setattr", {"o": self._sb_oid, "name": name, "v": value})
        self.__dict__.pop(name, None)
        self._sb_lazy.discard(name)  # fetched from the slave from now on

    def __delattr__(self, name):
        __tracebackhide__ = True
        self._sb_pin(name)
        self._sb_slave._conn.request("delattr", {"o": self._sb_oid, "name": name})
        self.__dict__.pop(name, None)
        self._sb_lazy.discard(name)

    def _sb_pin(self, name):
        """Before ``name`` is replaced on the slave: a not-yet-fetched callable that someone still
        holds (``real = os.open`` of ``mock.patch``/``swap_attr``, put back later) is fetched now,
        so it stays what it was when read instead of naming whatever ``os.open`` is by then."""
        entry = self.__dict__.get(name)
        # held by the dict, `entry` and getrefcount's argument: more is a reference kept elsewhere
        if type(entry) in (RemoteMethod, _DescriptorMethod) and entry._sb_resolved is None and \
                sys.getrefcount(entry) > 3:
            entry._sb_resolve()

    def __dir__(self):
        __tracebackhide__ = True
        return self._sb_slave._conn.request("dir", {"o": self._sb_oid})

    def __repr__(self):
        return f"<remote {self._sb_slave.name}: module {self._sb_name!r}>"


class RemoteDescriptor(int):
    """``fileno()`` of a remote file or socket: a slave's descriptor number, which must never be
    taken for one of the master's. As an int it is ``offset + the slave's number``, a number no
    descriptor of the master can have (Linux allows at most 2**20 by default), so local C code that
    takes it (numpy's ``tofile``/``fromfile``, ``os.fdopen`` outside the context) fails with
    EBADF instead of acting on the master's own descriptors. Passed back to its slave (``os.fstat(
    f.fileno())`` inside the context) it is the slave's number again. ``.remote`` is that number.
    """

    offset = 1 << 30
    made = False  # set once one exists: until then calls skip looking for them

    def __new__(cls, slave, number):
        if not RemoteDescriptor.made:
            _no_descriptor_at_or_above(cls.offset)
            from . import _descriptors  # noqa: PLC0415 (the master's fcntl/select, once one exists)
            _descriptors.install()
        self = super().__new__(cls, cls.offset + number)
        self.remote = number
        self.slave = slave
        RemoteDescriptor.made = True
        return self

    def __repr__(self):
        return f"<descriptor {self.remote} on {self.slave.name}>"

    # To Python code it is the slave's number (`fd == 5`, `fd < 257`, f"/proc/self/fd/{fd}", a key in a
    # dict of descriptors); only C code that reads the int (PyObject_AsFileDescriptor) sees the offset.
    def __str__(self):
        return str(self.remote)

    def __format__(self, spec):
        return format(self.remote, spec)

    def __hash__(self):
        return hash(self.remote)

    def __bool__(self):
        return self.remote != 0

    def __int__(self):  # `int(fd)` is the slave's number too (subprocess's `sorted(map(int, fds_to_keep))`)
        return self.remote

    # Arithmetic is on the slave's number too (test_os's `second != first + 1`, closerange(fd, fd + 2)):
    # the result is a plain int, the slave's number, as the caller means it.
    def __add__(self, other):
        return self.remote + other if type(other) is int else NotImplemented

    __radd__ = __add__

    def __sub__(self, other):
        number = self._sb_other(other)
        return NotImplemented if number is None else self.remote - number

    def __rsub__(self, other):
        return other - self.remote if type(other) is int else NotImplemented

    def _sb_other(self, other):
        if type(other) is RemoteDescriptor:
            return other.remote if other.slave is self.slave else None
        return other if isinstance(other, int) else None

    def __eq__(self, other):
        number = self._sb_other(other)
        if number is None:
            return False if type(other) is RemoteDescriptor else NotImplemented
        return self.remote == number

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __lt__(self, other):
        number = self._sb_other(other)
        return NotImplemented if number is None else self.remote < number

    def __le__(self, other):
        number = self._sb_other(other)
        return NotImplemented if number is None else self.remote <= number

    def __gt__(self, other):
        number = self._sb_other(other)
        return NotImplemented if number is None else self.remote > number

    def __ge__(self, other):
        number = self._sb_other(other)
        return NotImplemented if number is None else self.remote >= number


def _no_descriptor_at_or_above(offset):
    """A RemoteDescriptor's int is offset + n: no descriptor of the master may ever have such a number.
    Linux caps RLIMIT_NOFILE at fs.nr_open (2**20 by default, at most just under 2**31): if the hard
    limit would allow numbers at or above offset, it is lowered to offset, once, before the first one."""
    try:
        import resource  # noqa: PLC0415 (only once a slave's descriptor exists)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > offset:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (offset if soft == resource.RLIM_INFINITY else min(soft, offset), offset))
    except (ImportError, OSError, ValueError):
        pass


# Remote functions that return new descriptors of the slave (by module: the name, and where in the
# result the descriptors are): their results are RemoteDescriptors, so that the master's own
# os.close/os.dup2/fdopen (a name bound at import, C code, a finaliser outside the context) given one
# fails with EBADF instead of closing or reusing one of the master's own descriptors (libzmq's).
_FD, _PAIR, _FIRST = "fd", "pair", "first"
_OS_DESCRIPTORS = {"open": _FD, "dup": _FD, "dup2": _FD, "pipe": _PAIR, "pipe2": _PAIR, "openpty": _PAIR,
                   "memfd_create": _FD, "eventfd": _FD, "pidfd_open": _FD, "posix_openpt": _FD}
_DESCRIPTOR_RESULTS = {"os": _OS_DESCRIPTORS, "posix": _OS_DESCRIPTORS, "pty": {"openpty": _PAIR},
                       "tempfile": {"mkstemp": _FIRST, "_mkstemp_inner": _FIRST}}


def _as_descriptors(slave, result, shape):
    if shape == _FD:
        return RemoteDescriptor(slave, result) if type(result) is int else result
    if type(result) is tuple and result and all(type(item) is int for item in result[:2 if shape == _PAIR else 1]):
        count = 2 if shape == _PAIR else 1
        return tuple(RemoteDescriptor(slave, item) if i < count else item for i, item in enumerate(result))
    return result


def _slave_descriptor(slave, value):
    if type(value) is RemoteDescriptor:
        if value.slave is not slave:
            raise error("wrong_slave", f"{value!r} cannot be passed to {slave.name}; a descriptor belongs to "
                                       f"the slave it came from")
        return value.remote
    return value


def _slave_descriptors(slave, args, kwargs):
    """args and kwargs with each RemoteDescriptor (also in a list, tuple or set: pass_fds=) as its
    slave's number."""
    def translate(value):
        if type(value) in (list, tuple, set, frozenset) and any(type(item) is RemoteDescriptor for item in value):
            return type(value)(_slave_descriptor(slave, item) for item in value)
        return _slave_descriptor(slave, value)
    return tuple(translate(a) for a in args), {k: translate(v) for k, v in kwargs.items()}


# Functions of a slave's os whose leading arguments are descriptors (how many of them).
_OS_TAKES_FD = {name: 1 for name in (
    "dup", "fdopen", "fstat", "fstatvfs", "lseek", "read", "write", "pread", "pwrite", "readv", "writev", "close",
    "fsync", "fdatasync", "ftruncate", "fchmod", "fchown", "fchdir", "isatty", "ttyname", "device_encoding",
    "get_inheritable", "set_inheritable", "get_blocking", "set_blocking", "lockf", "posix_fadvise",
    "posix_fallocate", "tcgetpgrp", "tcsetpgrp", "fpathconf")}
_OS_TAKES_FD.update(dup2=2, sendfile=2)


def _refuse_c_view(module, name, args):
    """A descriptor number that only the master's C code can have made: a RemoteDescriptor reads as
    offset + the slave's number to C (PyObject_AsFileDescriptor). Given back to the slave's os as a
    descriptor, it is C code here that took a remote file's fileno() to do its own IO on it here
    (numpy's tofile/fromfile dup() it for a FILE*): refused, saying what to do instead."""
    __tracebackhide__ = True
    if module._sb_name not in ("os", "posix"):
        return
    for value in args[:_OS_TAKES_FD.get(name, 0)]:
        if type(value) is int and RemoteDescriptor.offset <= value < 2 * RemoteDescriptor.offset:
            slave = module._sb_slave
            raise error("local_io_in_slave_context", (
                f"os.{name}({value}) inside {slave.name}'s context: {value} is a slave's descriptor "
                f"{value - RemoteDescriptor.offset} as the master's C code reads it (the fileno() of a remote file, "
                f"taken by C code such as numpy's tofile/fromfile, which wants a descriptor of its own to do C IO "
                f"on this machine); C code on the master cannot use a slave's file. Write and read the file's "
                f"bytes through the file object instead (f.write(array.tobytes()), numpy.frombuffer(f.read(), "
                f"dtype)), or run that code on the slave with {slave.name}.run(...)"))


class _DescriptorMethod(RemoteMethod):
    """A module's function that returns new descriptors of the slave (``os.open``, ``os.pipe``,
    ``tempfile.mkstemp``): its result carries them as :class:`RemoteDescriptor`."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        owner = self._sb_owner
        result = RemoteMethod.__call__(self, *args, **kwargs)
        return _as_descriptors(owner._sb_slave, result, _DESCRIPTOR_RESULTS[owner._sb_name][self._sb_name])


class _Fileno:
    """``proxy.fileno``: calling it gives a :class:`RemoteDescriptor`."""

    __slots__ = ("_sb_owner",)

    def __init__(self, owner):
        self._sb_owner = owner

    def __call__(self):
        __tracebackhide__ = True
        owner = self._sb_owner
        number = owner._sb_slave._conn.request("call", {"o": owner._sb_oid, "path": ["fileno"]})
        if type(number) is not int:
            return number
        return RemoteDescriptor(owner._sb_slave, number)

    def __repr__(self):
        return f"<method fileno of remote {self._sb_owner._sb_type}>"


class _RemoteDoc:
    """``__doc__`` of a proxy is the remote object's (for help() and ``?``); of the class, ours."""

    def __init__(self, doc):
        self._doc = doc

    def __get__(self, obj, cls=None):
        __tracebackhide__ = True
        if obj is None:
            return self._doc
        if isinstance(obj, RemoteMethod):
            return obj._sb_resolve().__doc__
        return obj._sb_slave._conn.request("getattr", {"o": obj._sb_oid, "name": "__doc__"})


for _cls in (RemoteObject, RemoteCallable, RemoteMethod):
    _cls.__doc__ = _RemoteDoc(_cls.__doc__)


# Made on the slave once per slave (our text, never the user's): a callable's signature as plain
# data, (name, kind, has a default, repr of the default) per parameter.
_DESCRIBE_SIGNATURE = ("lambda f: [(p.name, int(p.kind), p.default is not p.empty, repr(p.default)) "
                       "for p in __import__('inspect').signature(f).parameters.values()]")
_signatures = {}  # (slave name, remote oid) → inspect.Signature


class _Default:
    """A remote default value in a local signature: shows as the remote repr."""

    __slots__ = ("_text",)

    def __init__(self, text):
        self._text = text

    def __repr__(self):
        return self._text


def remote_signature(proxy):
    """The inspect.Signature of a remote callable, from one round trip (then remembered); a
    ValueError as inspect raises when the slave cannot tell either."""
    __tracebackhide__ = True
    import inspect  # noqa: PLC0415 (only for introspection)
    slave = proxy._sb_slave
    key = (id(slave), proxy._sb_oid)
    found = _signatures.get(key)
    if found is None:
        describe = slave.__dict__.get("_sb_describe_signature")
        if describe is None:
            describe = slave._builtin("eval")(_DESCRIBE_SIGNATURE)
            slave.__dict__["_sb_describe_signature"] = describe
        try:
            described = describe(proxy)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"no signature found for remote {proxy._sb_type}: {exc}") from None
        found = _signatures[key] = inspect.Signature([
            inspect.Parameter(name, inspect._ParameterKind(kind),
                              default=_Default(default) if has_default else inspect.Parameter.empty)
            for name, kind, has_default, default in described])
    return found


def path_like_text(obj):
    """A local path (pathlib's, os.DirEntry) as the text a slave can use, or None. Other objects with
    __fspath__ cross by reference: the slave calls their __fspath__ (and anything else) back."""
    if isinstance(obj, (pathlib.PurePath, os.DirEntry)):
        path = os.fspath(obj)
        if isinstance(path, str):
            return path
    return None
