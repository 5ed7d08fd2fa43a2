"""The kernel's side of the JupyterLab extension (``labextension/``): the comm target
``splitbrain``.

The extension opens one comm per notebook kernel. The kernel answers with its state — which
slave cells run on (``local``, a sticky ``%slave NAME``, or the slaves of the running ``%%slave``
cell) and the rows of ``%slaves`` with the spawned agents' recent log lines — and sends it again
whenever it changes: around ``%%slave`` cells, after ``%slave NAME``, and after any cell whose
effects changed it (connect, forget, spawn, close, a slave found down). Nothing polls: a state is
computed only when something happened, and only while a frontend listens.

The extension's messages are actions, each answered with the new state and a one-line outcome::

    {"action": "refresh"}                          ping the connected slaves
    {"action": "connect", "name": N}               connect the registry's N
    {"action": "connect", "name": N, "target": T}  connect T and register it as N
    {"action": "forget", "name": N}
    {"action": "spawn", "name": N}

xeus-python serves comms in C++ (xeus's comm manager) and hands them to Python through
``get_ipython().kernel.comm_manager``: a target's callback gets ``(comm, open message)``; a comm
has ``send(data)``, ``on_msg(callback)``, ``on_close(callback)`` and ``close()``.
"""

import _io
import contextlib
import os

import splitbrain

from . import _actions

TARGET = "splitbrain"
LOG_LINES = 20


def _log_of(slave):
    """(last lines, path) of the agent's log when the kernel can read it: the log of an agent this
    kernel spawned. A remote agent's log stays on its machine (see labextension/README.md)."""
    agent = getattr(slave, "_agent", None)  # the splitbrain._spawn.Agent of a spawned slave
    if agent is None:
        return [], None
    path = str(agent.log_path)
    try:
        with _io.open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return [], None
    return lines[-LOG_LINES:], path


class SlavesChannel:
    """Every open ``splitbrain`` comm of this kernel, and what they were last told."""

    def __init__(self):
        # The callbacks handed to xeus are held here too, for the kernel's whole life: xeus drops
        # its references when the kernel is destroyed, without the GIL, and the last reference
        # must not be that one (the object would be freed there: the kernel crashed on shutdown).
        self._on_open = self._opened
        self._comms = {}        # comm id → (comm, its on_msg and on_close callbacks)
        self._closed = []       # the same, of comms the frontend closed
        self._cell = None       # names of the running %%slave cell's slaves
        self._sent = None
        self._message = None

    def register(self, shell):
        """Serve the target in *shell*'s kernel; False when the kernel has no comm manager (a
        plain IPython shell, where the magics still work)."""
        manager = getattr(getattr(shell, "kernel", None), "comm_manager", None)
        if manager is None:
            return False
        manager.register_target(TARGET, self._on_open)
        if self._after_cell not in shell.events.callbacks["post_run_cell"]:
            shell.events.register("post_run_cell", self._after_cell)
        return True

    # -- what the magics tell ----------------------------------------------------------------------

    @contextlib.contextmanager
    def cell(self, names):
        """The extent of a ``%%slave`` cell on *names*."""
        if not self._comms:
            yield
            return
        outer, self._cell = self._cell, list(names)
        self.publish()
        try:
            yield
        finally:
            self._cell = outer
            self.publish()

    def publish(self, ping=False, force=False):
        """Send the state to every comm if it changed (or *force*)."""
        if not self._comms:
            return
        try:
            state = self._state(ping)
        except Exception:  # what the panel shows must never fail a cell
            return
        if not force and state == self._sent:
            return
        self._sent = state
        for comm, _, _ in list(self._comms.values()):
            comm.send(state)

    # -- comm callbacks ----------------------------------------------------------------------------

    def _opened(self, comm, _msg):
        def on_msg(msg):
            self._received(msg)

        def on_close(_msg):
            # Kept, not dropped: xeus still holds the callbacks (see __init__).
            self._closed.append(self._comms.pop(comm.comm_id, None))

        self._comms[comm.comm_id] = (comm, on_msg, on_close)
        comm.on_msg(on_msg)
        comm.on_close(on_close)
        self._message = None
        self.publish(ping=True, force=True)

    def _received(self, msg):
        data = (msg.get("content") or {}).get("data") or {}
        action = data.get("action")
        name = str(data.get("name") or "").strip()
        try:
            with splitbrain.local():
                if action == "refresh":
                    text = "pinged the connected slaves"
                elif action == "connect":
                    text = _actions.connect(name, str(data.get("target") or "").strip() or None)
                elif action == "forget":
                    text = _actions.forget(name)
                elif action == "spawn":
                    text = _actions.spawn(name)
                else:
                    raise _actions.usage(f"the Slaves panel sent an unknown action {action!r}")
            self._message = {"action": action, "ok": True, "text": text}
        except Exception as exc:  # the panel shows it; a comm callback must not raise into xeus
            self._message = {"action": action, "ok": False, "text": f"{type(exc).__name__}: {exc}"}
        self.publish(ping=action == "refresh", force=True)

    def _after_cell(self, _result=None):
        self.publish()

    # -- the state ---------------------------------------------------------------------------------

    def _state(self, ping):
        sticky = splitbrain.current()  # outside any `with`: the cell's context, set by %slave NAME
        if self._cell:
            active = {"mode": "cell", "names": self._cell}
        elif sticky is not None:
            active = {"mode": "sticky", "names": [sticky.name]}
        else:
            active = {"mode": "local", "names": []}
        with splitbrain.local():
            rows = splitbrain.slaves(ping=ping)
            for row in rows:
                # A row not "not connected" is a slave object this kernel holds: slave() returns
                # it as it is, without connecting.
                held = splitbrain.slave(row["name"]) if row["state"] != "not connected" else None
                row["log"], row["log_source"] = _log_of(held) if held is not None else ([], None)
        return {"active": active, "slaves": rows, "message": self._message}


channel = SlavesChannel()
