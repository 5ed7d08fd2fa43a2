"""Functions and classes of the standard library cross to a slave by name: the slave's own.

A local ``os.chdir`` or ``selectors.SelectSelector`` given to a slave (``mock.patch`` putting back
the original it read, ``subprocess._PopenSelector = selectors.SelectSelector``, ``sorted(key=len)``)
stands for the object of the same module and qualified name there: the same code, acting on the
slave's machine. Calling back the master's ``os.chdir`` instead would do the IO on the wrong machine.
Only objects that their module really holds under their qualified name qualify, and only modules of
the standard library (built in, or under its directory), so the slave has the same ones.

Classes that a slave sends back as the master's own (builtin classes: ``int``, ``str``, ``type``;
exception classes) have no proxy here to name them by: :func:`wire_name` gives their name, which
crosses as ``{"$n": [module, qualname]}`` and is the slave's own class there, so ``isinstance(0,
int)`` run on the slave with the master's ``int`` is true. Methods of builtin classes
(``key=str.lower``) cross the same way: no callback per item.
"""

import sys
import types

from . import _core

_KINDS = (type, types.FunctionType, types.BuiltinFunctionType)
_BUILTIN_METHODS = (types.MethodDescriptorType, types.WrapperDescriptorType)
_BUILTIN_MODULES = frozenset(sys.builtin_module_names)


def _stdlib_module(name):
    """The local module *name* if it is the standard library's, else None."""
    from ._routing import _STDLIB  # noqa: PLC0415 (_routing imports what imports us)
    module = sys.modules.get(name)
    if isinstance(module, _core.RoutedModule):
        module = _core.routed_real(module)
    if module is None:
        return None
    if name in _BUILTIN_MODULES:
        return module
    path = getattr(module, "__file__", None)
    if isinstance(path, str) and path.startswith(_STDLIB) and "-packages" not in path:
        return module
    return None


def counterpart(slave, obj):
    """*slave*'s own object for the standard library's function or class *obj*, or None."""
    obj = _core.unrouted(obj)  # `os.stat` read outside a context stands for the real one
    if not isinstance(obj, _KINDS):
        return None
    try:
        module_name, qualname = obj.__module__, obj.__qualname__
    except AttributeError:
        return None
    if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    if module_name == "builtins" and isinstance(obj, type):
        return None  # str, bytes...: a slave gives them back as ours, so there is no remote one to name
    module = _stdlib_module(module_name)
    if module is None:
        return None
    found = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    if found is not obj:
        return None
    remote = slave._module(module_name)
    for part in qualname.split("."):
        remote = getattr(remote, part)
    return remote


def _held_as(module, qualname, obj):
    found = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is obj


def wire_name(obj):
    """``(module, qualname)`` if *obj* crosses to a slave by name (``$n``): a builtin class, an
    exception class of the standard library, or a method of a builtin class; else None."""
    if isinstance(obj, type):
        module_name, qualname = obj.__module__, obj.__qualname__
        if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
            return None
        if module_name != "builtins" and not issubclass(obj, BaseException):
            return None  # a proxy of the slave's names it (counterpart)
        module = _stdlib_module(module_name)
        return (module_name, qualname) if module is not None and _held_as(module, qualname, obj) else None
    if type(obj) in _BUILTIN_METHODS:
        owner = getattr(obj, "__objclass__", None)
        name = wire_name(owner) if isinstance(owner, type) else None
        if name is None or name[0] != "builtins" or vars(owner).get(obj.__name__) is not obj:
            return None
        return (name[0], f"{name[1]}.{obj.__name__}")
    return None
