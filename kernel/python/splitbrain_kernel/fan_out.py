"""What a fan-out cell (``%%slave a b``) shows while it runs: one output area per slave, updated in
place by display id, headed by the slave's state line — ``[a] running 0.4 s``, ``[a] done in
1.2 s``, ``[a] failed (agent_unreachable) in 0.3 s`` — above that slave's output as it is
produced. Nobody waits for the slowest slave to see the others.

Only the cell's own thread publishes: the slaves' threads append to their area's chunks, and the
cell's thread renders what changed (at most every ``INTERVAL`` seconds per area)."""

import time
import uuid

from IPython.display import display, update_display

from . import tracebacks

INTERVAL = 0.1
# A running slave's line is redrawn this often even without new output, so its clock moves.
CLOCK_INTERVAL = 1.0


class Area:
    """One slave's part of a fan-out cell."""

    def __init__(self, name, display_id):
        self.name = name
        self.display_id = display_id
        self.chunks = []             # (stream, text), appended by the slave's thread
        self.started = time.monotonic()
        self.ended = None
        self.error = None
        self.value = None
        self._shown = (-1, None)     # (chunks rendered, ended) of the last render
        self._rendered_at = 0.0

    def succeed(self, value):
        self.value = value
        self.ended = time.monotonic()

    def fail(self, error):
        self.error = error
        self.ended = time.monotonic()

    def state_line(self, now):
        if self.ended is None:
            return f"[{self.name}] running {now - self.started:.1f} s"
        took = f"{self.ended - self.started:.2f} s"
        if self.error is None:
            return f"[{self.name}] done in {took}"
        if isinstance(self.error, KeyboardInterrupt):
            return f"[{self.name}] interrupted after {took}"
        why = getattr(self.error, "code", None) or type(self.error).__name__
        return f"[{self.name}] failed ({why}) in {took}"

    def text(self, now):
        text = self.state_line(now) + "\n"
        output = "".join(chunk for _, chunk in list(self.chunks))
        if output:
            text += output if output.endswith("\n") else output + "\n"
        if self.error is not None and not isinstance(self.error, KeyboardInterrupt):
            text += tracebacks.summary(self.name, self.error)
        elif self.value is not None:
            text += f"-> {self.value!r}\n"
        return text

    def due(self, now):
        """True when this area changed since it was last shown, and may be shown again."""
        if self._shown != (len(self.chunks), self.ended):
            return self.ended is not None or now - self._rendered_at >= INTERVAL
        return self.ended is None and now - self._rendered_at >= CLOCK_INTERVAL

    def shown(self, now):
        self._shown = (len(self.chunks), self.ended)
        self._rendered_at = now


class FanOutView:
    """The output areas of one fan-out cell, in the order the slaves were named."""

    def __init__(self, names):
        token = uuid.uuid4().hex[:12]
        self.areas = {name: Area(name, f"splitbrain-fan-out-{token}-{name}") for name in names}
        now = time.monotonic()
        for area in self.areas.values():
            display({"text/plain": area.text(now)}, raw=True, display_id=area.display_id)
            area.shown(now)

    def refresh(self):
        """Show what changed since the last call (called by the cell's thread only)."""
        now = time.monotonic()
        for area in self.areas.values():
            if area.due(now):
                update_display({"text/plain": area.text(now)}, raw=True, display_id=area.display_id)
                area.shown(now)
