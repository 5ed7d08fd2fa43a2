"""Local objects by reference: the master's objects that a slave uses where they live.

A local value that is not plain data (a function given as ``ignore=``/``onerror=``/``key=``, a
``BytesIO``, a dataclass, a list holding such things) crosses to the slave as ``{"$l": eid}``, an
entry of this export table; the slave holds a proxy, and each use of it there (a call, an attribute,
``len``, ``iter``, ``with``, ``os.fspath``...) is a callback request answered here, by the thread
that waits for the call, while the call runs (docs/protocol.md, "Callbacks"). An exported object
stays alive until the slave releases it (in batches, on its replies) or the session ends.
"""

import itertools

# Special methods a proxy on the slave has when the local type defines them (the worker's
# FORWARDED, agent/src/callbacks.cpp, is the same set): nothing else, so that len(), iter(),
# os.fspath(), hash() ... behave there as they do here.
PROTOCOLS = (
    "__len__", "__contains__", "__getitem__", "__setitem__", "__delitem__", "__iter__", "__next__",
    "__reversed__", "__fspath__", "__enter__", "__exit__", "__bool__", "__index__", "__int__",
    "__float__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__add__",
    "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__", "__radd__", "__rsub__", "__rmul__",
    "__and__", "__or__", "__xor__", "__neg__", "__abs__",
)

_ITER_BATCH = 100        # items per answer when the slave iterates a local object
_KEPT_ERRORS = 64        # exceptions of callbacks kept for the way back, the most recent ones

_protocols_of = {}       # type -> the PROTOCOLS it has, as sent with its references


def protocols(cls):
    """The special methods of *cls* that differ from object's (what the slave's proxy forwards)."""
    found = _protocols_of.get(cls)
    if found is None:
        names = []
        for name in PROTOCOLS:
            mine = getattr(cls, name, None)
            if mine is None:
                continue
            if mine is getattr(object, name, None):
                continue
            names.append(name)
        if "__hash__" not in names and "__eq__" in names and getattr(cls, "__hash__", None) is not None:
            names.append("__hash__")  # a hash of its own next to __eq__ (a frozen dataclass)
        found = _protocols_of[cls] = tuple(names)
    return found


class Exports:
    """One session's table of local objects the slave holds by reference."""

    def __init__(self):
        self._objects = {}     # eid -> [object, count of references the slave was sent]
        self._eids = {}        # id(object) -> eid, while exported: the same object, the same eid
        self._numbers = itertools.count(1)
        self._errors = {}      # token -> exception a callback raised, until it comes back
        self._tokens = itertools.count(1)

    def __len__(self):
        return len(self._objects)

    def export(self, obj):
        """The reference of *obj* for the wire: (eid, type name, callable, protocols)."""
        eid = self._eids.get(id(obj))
        if eid is None:
            eid = next(self._numbers)
            self._objects[eid] = [obj, 0]
            self._eids[id(obj)] = eid
        self._objects[eid][1] += 1
        cls = type(obj)
        return (eid, f"{cls.__module__}.{cls.__qualname__}", callable(obj), protocols(cls))

    def get(self, eid):
        entry = self._objects.get(eid)
        if entry is None:
            from ._errors import error
            raise error("bad_object", f"no local object {eid} is exported to this session (released)")
        return entry[0]

    def release(self, pairs):
        for eid, count in pairs:
            entry = self._objects.get(eid)
            if entry is None:
                continue
            entry[1] -= count
            if entry[1] <= 0:
                del self._objects[eid]
                self._eids.pop(id(entry[0]), None)

    def clear(self):
        self._objects.clear()
        self._eids.clear()
        self._errors.clear()

    def keep_error(self, exc):
        """A token for *exc*, raised by a callback: when the slave's call fails with it, the caller
        gets *exc* itself."""
        token = next(self._tokens)
        self._errors[token] = exc
        while len(self._errors) > _KEPT_ERRORS:
            del self._errors[next(iter(self._errors))]
        return token

    def take_error(self, token):
        return self._errors.pop(token, None)


def _special_method(target, name):
    """*name* looked up as Python looks up a special method (on the type, bound by its descriptor):
    a ``unittest.mock`` MagicMock's ``__eq__`` is a descriptor of its class that gives the mock's own
    ``__eq__(other)``; ``getattr(type(target), name)`` would give that unbound, without *target*."""
    for klass in type(target).__mro__:
        if name in klass.__dict__:
            found = klass.__dict__[name]
            get = getattr(type(found), "__get__", None)
            return get(found, target, type(target)) if get is not None else found
    raise AttributeError(f"{type(target).__name__!r} object has no attribute {name!r}")


def _not_implemented(target, name, args):
    """NotImplemented cannot cross (it would by reference, and mean nothing there): what Python
    does in the end when neither operand implements the operation, without asking the slave's
    operand for its reflected method: == and != compare identities, the rest is a TypeError."""
    if name in ("__eq__", "__ne__") and len(args) == 1:
        return (target is args[0]) == (name == "__eq__")
    raise TypeError(f"{type(target).__name__!r} object: {name} does not support "
                    f"{', '.join(type(a).__name__ for a in args) or 'no arguments'}")


def serve(op, target, name, args, kwargs):
    """One callback request of the slave on *target*, a local object."""
    args = args or ()
    kwargs = kwargs or {}
    if op == "call":
        return target(*args, **kwargs)
    if op == "method":
        result = _special_method(target, name)(*args, **kwargs)
        return _not_implemented(target, name, args) if result is NotImplemented else result
    if op == "getattr":
        return getattr(target, name)
    if op == "setattr":
        setattr(target, name, args[0])
        return None
    if op == "delattr":
        delattr(target, name)
        return None
    if op in ("iter", "next"):
        iterator = iter(target) if op == "iter" else target
        items = tuple(itertools.islice(iterator, _ITER_BATCH))
        return items, (iterator if len(items) == _ITER_BATCH else None)
    raise ValueError(f"unknown callback operation {op!r}")
