"""Which slave is active: one ``contextvars.ContextVar``, so each thread and asyncio task has its
own, a new thread starts local, and entering or leaving is O(1) (nothing is copied or rebuilt)."""

import contextvars

from ._errors import error

# The active Slave, or None for local. Read by the routed modules in C (PyContextVar_Get).
current_slave = contextvars.ContextVar("splitbrain.current", default=None)

# The tokens of the `with` blocks entered in this context, innermost first: (token, rest) pairs.
_tokens = contextvars.ContextVar("splitbrain.tokens", default=None)


def push(slave):
    """Make *slave* (or None: local) active until the matching pop()."""
    _tokens.set((current_slave.set(slave), _tokens.get()))


def pop():
    """Undo the innermost push() of this context."""
    stack = _tokens.get()
    if stack is None:
        raise error("context", "leaving a slave context that was not entered in this thread or task")
    token, rest = stack
    _tokens.set(rest)
    current_slave.reset(token)


def current():
    """The active :class:`Slave`, or None when the master (local) is active."""
    return current_slave.get()


def activate(slave):
    """Make *slave* active in the current context from now on (None: local), without a `with`.

    This is what the kernel's ``%slave NAME`` does; ``with`` blocks and ``local()`` still nest
    inside it.
    """
    current_slave.set(slave)


class local:
    """``with splitbrain.local():`` — the master is active inside, whatever was before.

    Routed modules (``os``, ``subprocess``, ``open``, ...) act on this machine again until the block
    ends; the previous slave comes back afterwards, also when the block raises.
    """

    __slots__ = ()

    def __enter__(self):
        push(None)
        return None

    def __exit__(self, *exc_info):
        pop()
        return False
