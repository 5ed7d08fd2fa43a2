"""What the kernel's first cell does not need, imported when first used (issue 11, point 7).

`import IPython` imports IPython.terminal.embed for the one name IPython.embed: the terminal
shell, its debugger, its application and prompt_toolkit with wcwidth, about a third of
IPython's import, which a kernel never runs (xeus-python's shell is IPython.core's). install()
(called before xeus-python imports IPython) makes that module deferred: its module object exists
as usual (sys.modules, IPython.terminal.embed), is executed the first time anything of it is
used, and is the real module from then on. `IPython.embed` and `from IPython import embed` give the
real function (its import happens then). Nothing else changes: the modules the deferred one
would import are imported by whatever else needs them, as before.

Jedi (with parso, about a sixth of the shell's import) is deferred the same way until the first
completion: IPython.core.completer imports `jedi`, `jedi.api.helpers` and `jedi.api.classes` and
sets `jedi.settings.case_insensitive_completion`, and uses jedi only inside completion. Those
three modules are made deferred modules (_DeferredPackage: their module objects exist, with
their `__path__`, `__file__` and `__spec__`, and are executed, parents first, the first time an
attribute of theirs is read); `jedi.settings` (os and platform only) is imported for real, so the
setting IPython makes is kept. pexpect (the first `!command`) and pydoc (IPython's verbose
tracebacks, `help()`) wait in the same way: DEFERRED_MODULES. A deferred module executed after splitbrain is imported runs as
any module imported then does (splitbrain._routing's master loader: the master active, the real
modules in its globals, as for one imported before splitbrain).
"""
import importlib.abc
import importlib.machinery
import sys
import threading
import types

DEFERRED = "IPython.terminal.embed"
_lock = threading.RLock()
_state = {"shim_handed_out": False}


def _execute(loader, module):
    """loader.exec_module(module), as the import system would run it now (see the docstring)."""
    routing = sys.modules.get("splitbrain._routing")
    master_loader = getattr(routing, "_MasterLoader", None)
    if master_loader is not None:
        loader = master_loader(loader, routing._master_only(module.__spec__))
    loader.exec_module(module)


def _load(module):
    """Executes the deferred module in its own module object, once; returns it."""
    with _lock:
        if type(module) is not _DeferredModule:
            return module
        loader = module.__spec__.loader.real
        module.__class__ = types.ModuleType
        module.__spec__.loader = loader
        module.__loader__ = loader
        try:
            _execute(loader, module)
        except BaseException:
            # As a failed import: gone from sys.modules, imported anew next time.
            sys.modules.pop(DEFERRED, None)
            parent = sys.modules.get(DEFERRED.rpartition(".")[0])
            if parent is not None and parent.__dict__.get("embed") is module:
                del parent.__dict__["embed"]
            raise
        ipython = sys.modules.get("IPython")
        if ipython is not None:
            if ipython.__dict__.get("embed") is _embed:
                ipython.__dict__["embed"] = module.embed
            if type(ipython) is _IPythonModule:
                ipython.__class__ = types.ModuleType
        return module


def _embed(*args, **kwargs):
    # What IPython/__init__.py's `from .terminal.embed import embed` binds in IPython's namespace;
    # attribute access (IPython.embed) gives the real function, this only vars(IPython) shows.
    return _load(sys.modules[DEFERRED]).embed(*args, **kwargs)


class _DeferredModule(types.ModuleType):
    """IPython.terminal.embed before its first use."""

    @property
    def embed(self):
        with _lock:
            if not _state["shim_handed_out"]:  # IPython/__init__.py's own `from ... import embed`
                _state["shim_handed_out"] = True
                return _embed
        return _load(self).embed

    @embed.setter
    def embed(self, value):
        _load(self).embed = value

    def __getattr__(self, name):
        if name == "__path__":  # asked by `from M import x`: a module, not a package
            raise AttributeError(name)
        return getattr(_load(self), name)

    def __setattr__(self, name, value):
        if name.startswith("__") and name.endswith("__"):  # the import system's bookkeeping
            return super().__setattr__(name, value)
        setattr(_load(self), name, value)

    def __delattr__(self, name):
        delattr(_load(self), name)

    def __dir__(self):
        return dir(_load(self))


class _IPythonModule(types.ModuleType):
    """IPython while IPython.terminal.embed is deferred: IPython.embed is the real function."""

    @property
    def embed(self):
        return _load(sys.modules[DEFERRED]).embed

    @embed.setter
    def embed(self, value):
        self.__class__ = types.ModuleType
        self.embed = value

    @embed.deleter
    def embed(self):
        self.__class__ = types.ModuleType
        del self.embed


class _DeferringLoader(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        return None  # a plain module, as the real loader would make

    def exec_module(self, module):
        module.__class__ = _DeferredModule
        ipython = sys.modules.get("IPython")
        if ipython is not None and type(ipython) is types.ModuleType:
            ipython.__class__ = _IPythonModule


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != DEFERRED:
            return None
        uninstall()  # one module, once
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _DeferringLoader(spec.loader)
        return spec


_finder = _Finder()

# -- jedi, pexpect, pydoc --------------------------------------------------------------------------

# Modules of the shell's import that only a later request uses, each imported at the top of one
# IPython module as `import M` and used inside its functions: jedi by the completer (the first
# complete_request), pexpect by IPython.utils._process_posix (the first `!command`), pydoc (with
# platform and sysconfig) by IPython.core.ultratb (its text_repr). `import M` anywhere gives the
# same module object, which runs when first read. asyncio too: IPython.core.async_helpers imports
# it and uses it only to run a cell that awaits (a plain cell runs without an event loop).
# Importing a submodule of a package that waits (`import asyncio.subprocess`) runs the package
# first, as an import of it would.
DEFERRED_MODULES = frozenset({"jedi", "jedi.api", "jedi.api.helpers", "jedi.api.classes", "pexpect", "pydoc",
                              "asyncio"})
# Imported for real while their package waits (each imports nothing of it): IPython sets a jedi
# setting, and IPython.core.magics.script imports asyncio.exceptions.
EAGER_MODULES = frozenset({"jedi.settings", "asyncio.exceptions"})
_waiting = set(DEFERRED_MODULES)  # the ones still deferred when imported


def _top(name):
    return name.partition(".")[0]


def _load_package(module):
    """Executes a deferred module (its deferred parent first), once; returns it."""
    with _lock:
        if type(module) is not _DeferredPackage:
            return module
        parent = sys.modules.get(module.__name__.rpartition(".")[0])
        if type(parent) is _DeferredPackage:
            _load_package(parent)
            if type(module) is not _DeferredPackage:  # the parent's code used it
                return module
        top = _top(module.__name__)
        # From now on, the package's modules are imported as usual (its own code imports them).
        _waiting.difference_update({name for name in _waiting if _top(name) == top})
        if not _waiting:
            _package_finder.uninstall()
        loader = module.__spec__.loader.real
        module.__class__ = types.ModuleType
        module.__spec__.loader = loader
        module.__loader__ = loader
        try:
            _execute(loader, module)
        except BaseException:
            sys.modules.pop(module.__name__, None)  # as a failed import: imported anew next time
            raise
        return module


class _DeferredPackage(types.ModuleType):
    """A module of DEFERRED_MODULES before its first use. Its import-system attributes and the
    submodules bound to it are in its namespace as for any module; reading anything else runs it."""

    def __getattr__(self, name):
        if name == "__path__":  # only a package has one, in its namespace already
            raise AttributeError(name)
        eager = f"{self.__name__}.{name}"
        if eager in EAGER_MODULES:
            return importlib.import_module(eager)
        return getattr(_load_package(self), name)

    def __setattr__(self, name, value):
        # The import system binds a submodule (deferred or real) to its parent: kept as it is.
        if (name.startswith("__") and name.endswith("__")) or isinstance(value, types.ModuleType):
            return super().__setattr__(name, value)
        setattr(_load_package(self), name, value)

    def __delattr__(self, name):
        delattr(_load_package(self), name)

    def __dir__(self):
        return dir(_load_package(self))


class _PackageLoader(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__class__ = _DeferredPackage


class _PackageFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _waiting:
            parent = sys.modules.get(fullname.rpartition(".")[0])
            if type(parent) is _DeferredPackage and fullname not in EAGER_MODULES:
                _load_package(parent)  # its own code may import this one: then it is there now
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PackageLoader(spec.loader)
        return spec

    def install(self):
        _waiting.difference_update({name for name in _waiting if _top(name) in sys.modules})
        if _waiting and self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)


_package_finder = _PackageFinder()


def install():
    """Defers IPython.terminal.embed and DEFERRED_MODULES; none that is imported already."""
    if "IPython" not in sys.modules and _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    _package_finder.install()


def uninstall():
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
