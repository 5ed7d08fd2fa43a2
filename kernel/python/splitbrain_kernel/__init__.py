"""What splitbrain-kernel adds to xeus-python's IPython shell: the ``%%slave`` magics, and
completion and inspection that answer for the slave named in a ``%%slave`` cell."""

import contextlib

import splitbrain._routing

# The notebook's machinery acts on the master whatever slave a cell makes active: the shell,
# Jupyter's messaging, completion, tracebacks. Declared before the magics import anything else;
# importing splitbrain above routed the modules these had imported already, this puts them back.
splitbrain._routing.exempt(
    "splitbrain_kernel", "_splitbrain_kernel", "IPython", "ipykernel", "xeus_python_shell", "jupyter_client", "jupyter_core",
    "zmq", "traitlets", "tornado", "debugpy", "prompt_toolkit", "pygments", "jedi", "parso",
    "matplotlib_inline", "comm", "nest_asyncio", "psutil", "platformdirs", "pexpect", "ptyprocess",
    "executing", "stack_data", "asttokens", "pure_eval", "wcwidth", "decorator", "pickleshare", "backcall")

from .magics import SlaveMagics, load_ipython_extension  # noqa: E402  (after the declaration)

__all__ = ["SlaveMagics", "load_ipython_extension", "context_for_cell"]


def _first_slave_name(line):
    """The first slave a ``%%slave`` line names, read by the magic's own parser, or None."""
    from IPython.core.magic_arguments import parse_argstring
    try:
        args = parse_argstring(SlaveMagics.slave, line)
    except Exception:  # a half-typed line (`%%slave -o`) or bad quoting: no slave to speak of
        return None
    return args.names[0] if args.names else None


def _connected_slave(name):
    """The slave *name* if it is connected and answering, else None. Never connects: Tab must not
    wait for an agent (a registry entry may point at a machine that is off)."""
    import splitbrain
    for row in splitbrain.slaves(ping=False):
        if row["name"] == name and row["state"] == "connected":
            return splitbrain.slave(name)
    return None


class _SlaveCompletion:
    """The slave's context, with Jedi off for its extent (see load_ipython_extension)."""

    def __init__(self, slave):
        self._slave = slave
        self._completer = None
        self._use_jedi = None

    def __enter__(self):
        from IPython import get_ipython
        shell = get_ipython()
        if shell is not None:
            self._completer = shell.Completer
            self._use_jedi = self._completer.use_jedi
            self._completer.use_jedi = False
        if self._slave is not None:
            self._slave.__enter__()
        return self._slave

    def __exit__(self, *exc_info):
        try:
            if self._slave is not None:
                self._slave.__exit__(*exc_info)
        finally:
            if self._completer is not None:
                self._completer.use_jedi = self._use_jedi
        return False


def context_for_cell(code):
    """The context a cell's completion/inspection should run in: the first slave named by its
    ``%%slave`` line if that slave is connected, else a no-op. Never raises and never connects:
    completion must not fail or block because a slave is unknown or down."""
    try:
        import splitbrain
        first, _, _ = code.partition("\n")
        words = first.split(None, 1)
        if words and words[0] == "%%slave":
            name = _first_slave_name(words[1] if len(words) > 1 else "")
            slave = _connected_slave(name) if name else None
            if slave is not None:
                return _SlaveCompletion(slave)
        elif splitbrain.current() is not None:
            # A sticky slave (`%slave NAME`): routed modules answer for it, so Jedi must stay off.
            return _SlaveCompletion(None)
    except Exception:
        pass
    return contextlib.nullcontext()
