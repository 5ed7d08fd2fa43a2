"""``box.run(fn, *args, **kwargs)`` and ``@box.remote``: a whole function runs on the slave in one
round trip (the worker's `run` operation, docs/protocol.md).

The function travels as its source text (``inspect.getsource``, dedented), never as bytecode or a
pickle, so the two Pythons may differ. What it reads from outside its body travels beside it, and is
checked here, before anything is sent:

- globals that are modules (``os``, ``subprocess``, routed or not) are imported on the slave by name;
- builtins are the slave's builtins;
- closure variables and other globals cross as values if they are plain data, by name if they are
  builtin or exception classes (the slave's own), or as references if they are that slave's own
  remote objects;
- anything else (a local function, class or object) is the error ``not_shippable``, naming them all.

The bytecode of the function is read (``dis``) only to find which globals it loads."""

import ast
import builtins
import dis
import functools
import inspect
import textwrap
import types

from . import _byname, _context
from ._errors import error
from ._proxy import RemoteModule, RemoteObject

_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _is_plain(value, depth=0):
    if isinstance(value, _PLAIN_SCALARS):
        return True
    if depth > 50:
        return False
    if type(value) in (tuple, list, set, frozenset):
        return all(_is_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _crosses_by_name(value):
    """A builtin or exception class, or a tuple of them (``kinds = (int, float)``): the slave's own."""
    if type(value) is tuple:
        return all(_is_plain(v) or _crosses_by_name(v) for v in value)
    return _byname.wire_name(value) is not None


def _global_names(code):
    """Names the code (and the functions, lambdas and comprehensions nested in it) loads as globals."""
    names = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL"):
            names.add(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _source(fn):
    """The function's own `def`, dedented, decorators cut off, with blank lines before it so that the
    slave's tracebacks give the line numbers of the file it came from."""
    where = f"{fn.__qualname__}"
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError) as e:
        raise error("not_shippable", f"the source of {where} cannot be read ({e}); box.run needs a function "
                                     f"defined with def in a file or a notebook cell") from None
    text = textwrap.dedent("".join(lines))
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise error("not_shippable", f"the source of {where} does not parse on its own ({e.msg}); box.run "
                                     f"needs a function defined with def, not a lambda") from None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name != fn.__name__:
        raise error("not_shippable", f"{where} is not a function defined with def (a lambda?); box.run needs one")
    body = text.splitlines(keepends=True)[node.lineno - 1:]  # from the def line: decorators stay here
    return "\n" * (first + node.lineno - 2) + "".join(body)


def prepare(slave, fn):
    """The `run` request's fields for *fn*, less its arguments; not_shippable if it cannot travel.
    The source is read on the master, also inside a slave's context (linecache calls `open`)."""
    with _context.local():
        return _prepare(slave, fn)


def _prepare(slave, fn):
    if isinstance(fn, functools.partial) or not isinstance(fn, types.FunctionType):
        raise error("not_shippable", f"{fn!r} is not a plain function; box.run needs a function defined with def")
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise error("not_shippable", f"{fn.__qualname__} is a coroutine or generator function; box.run runs "
                                     f"plain functions (return a list instead of yielding)")
    mods, free, refused = {}, {}, []
    outside = [(name, cell.cell_contents) for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ())
               if _cell_filled(cell)]
    for name in sorted(_global_names(fn.__code__)):
        if name in fn.__globals__:
            outside.append((name, fn.__globals__[name]))
        elif not hasattr(builtins, name):
            pass  # undefined here too: the slave raises the NameError the local call would
    for name, value in outside:
        if isinstance(value, types.ModuleType):
            mods[name] = value.__name__
        elif isinstance(value, RemoteModule) and value._sb_slave is slave:  # box.modules.os
            mods[name] = value._sb_name
        elif _is_plain(value) or (isinstance(value, RemoteObject) and value._sb_slave is slave) or \
                _crosses_by_name(value):
            free[name] = value
        else:
            refused.append(f"{name} ({type(value).__module__}.{type(value).__qualname__})")
    if refused:
        raise error("not_shippable", f"{fn.__qualname__} uses {', '.join(refused)}, which cannot travel to "
                                     f"{slave.name}: only modules, builtins, plain data and {slave.name}'s own "
                                     f"objects do; define it inside the function or pass it as an argument")
    return {"src": _source(fn), "name": fn.__name__, "mods": mods or None, "free": free or None}


def _cell_filled(cell):
    try:
        cell.cell_contents
    except ValueError:  # not yet assigned (a function that refers to itself, defined later)
        return False
    return True


def run(slave, fn, args, kwargs):
    __tracebackhide__ = True
    fields = prepare(slave, fn)
    fields["a"] = args
    fields["kw"] = kwargs or None
    return slave._conn.request("run", fields)


def remote(slave, fn):
    """``@box.remote``: *fn* becomes a function that runs on *slave* (checked now, not at the call)."""
    prepare(slave, fn)

    @functools.wraps(fn)
    def on_slave(*args, **kwargs):
        __tracebackhide__ = True
        return run(slave, fn, args, kwargs)

    on_slave.local = fn  # the undecorated function, to run here
    return on_slave
