"""What splitbrain-kernel adds to xeus-python's IPython shell: the ``%%slave`` magics, and
completion and inspection that answer for the slave named in a ``%%slave`` cell."""

import contextlib

from .magics import SlaveMagics, load_ipython_extension

__all__ = ["SlaveMagics", "load_ipython_extension", "context_for_cell"]


def context_for_cell(code):
    """The context a cell's completion/inspection should run in: the first slave named by its
    ``%%slave`` line, else a no-op. Never raises: completion must not fail because a slave is
    unknown or down."""
    first, _, _ = code.partition("\n")
    words = first.split()
    if len(words) < 2 or words[0] != "%%slave":
        return contextlib.nullcontext()
    names = [w for w in words[1:] if not w.startswith("-")]
    try:
        import splitbrain
        return splitbrain.slave(names[0]) if names else contextlib.nullcontext()
    except Exception:
        return contextlib.nullcontext()
