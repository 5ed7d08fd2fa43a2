"""A quiet line in the cell while a remote call runs long: ``waiting on bench-a: subprocess.run(…)
3.4 s``, shown once the call has run for ``AFTER`` seconds, updated in place (display id) and
emptied when the call returns.

Nothing is added to the calls themselves: while a cell runs, one watcher thread looks at the
cell's thread every ``EVERY`` seconds (``sys._current_frames``). A thread waiting for a slave's
reply is inside a frame of splitbrain's proxies; the frame just outside them is the call the user
wrote, and its current instruction's source position is the text to show."""

import linecache
import signal
import sys
import threading
import time
import uuid

from IPython.display import display, update_display

import splitbrain._proxy

AFTER = 2.0
EVERY = 0.2    # how often the cell's thread is looked at
REDRAW = 0.5   # how often a shown line is redrawn

_PROXY_FILE = splitbrain._proxy.__file__


def _call_text(frame):
    """``subprocess.run(…)``: the call *frame* is executing, its arguments elided."""
    try:
        positions = list(frame.f_code.co_positions())[frame.f_lasti // 2]
        line, end_line, col, end_col = positions
    except (IndexError, ValueError, TypeError):
        line, end_line, col, end_col = frame.f_lineno, None, None, None
    text = linecache.getline(frame.f_code.co_filename, line or frame.f_lineno)
    if text and col is not None and end_line == line and end_col is not None:
        text = text.encode()[col:end_col].decode(errors="replace")
    text = text.strip()
    head, paren, _ = text.partition("(")
    return f"{head}(…)" if paren else (text or frame.f_code.co_name)


def _waiting(frame):
    """(proxy frame, caller frame, slave name) when the thread whose innermost frame is *frame*
    waits for a slave's reply, else None. The outermost run of proxy frames is the call the user's
    code made; frames inside it (output arriving, a local callback the slave calls) are part of
    that wait."""
    found = None
    while frame is not None:
        outer = frame.f_back
        if frame.f_code.co_filename == _PROXY_FILE and (outer is None or outer.f_code.co_filename != _PROXY_FILE):
            found = (frame, outer)
        frame = outer
    if found is None or found[1] is None:
        return None
    proxy, caller = found
    slave = getattr(proxy.f_locals.get("self"), "_sb_slave", None)
    return proxy, caller, getattr(slave, "name", None) or "a slave"


class CallWatch:
    """The watcher thread: armed for a cell's extent with the cell's thread, idle otherwise."""

    def __init__(self):
        self._lock = threading.Lock()
        self._armed = threading.Event()
        self._thread_id = None
        self._thread = None
        self._seen = None       # (proxy frame, when first seen): held, so its id is not reused
        self._display_id = None
        self._drawn = 0.0

    def start(self):
        """Start the watcher thread, once. It is born with every signal blocked: signals are the
        cell's thread's to take (a SIGINT must interrupt the cell's wait for its slave), and a
        thread that unblocked them even for a moment could take one."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="splitbrain-progress", daemon=True)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def arm(self, thread_id=None):
        with self._lock:
            self._thread_id = thread_id or threading.get_ident()
            self._seen = None
        self._armed.set()

    def disarm(self):
        self._armed.clear()
        with self._lock:
            self._thread_id = None
            self._seen = None
            self._clear()

    def _clear(self):
        if self._display_id is not None:
            update_display({"text/plain": ""}, raw=True, display_id=self._display_id)
            self._display_id = None

    def _watch(self):
        while True:
            self._armed.wait()
            time.sleep(EVERY)
            with self._lock:
                if self._thread_id is None:
                    continue
                try:
                    self._look(sys._current_frames().get(self._thread_id))
                except Exception:  # a progress line must never disturb the cell
                    pass

    def _look(self, frame):
        found = _waiting(frame)
        del frame
        if found is None:
            self._seen = None
            self._clear()
            return
        proxy, caller, name = found
        now = time.monotonic()
        if self._seen is None or self._seen[0] is not proxy:
            self._seen = (proxy, now)
            self._clear()
            return
        elapsed = now - self._seen[1]
        if elapsed < AFTER:
            return
        line = {"text/plain": f"waiting on {name}: {_call_text(caller)} {elapsed:.1f} s"}
        if self._display_id is None:
            self._display_id = f"splitbrain-waiting-{uuid.uuid4().hex[:12]}"
            display(line, raw=True, display_id=self._display_id)
            self._drawn = now
        elif now - self._drawn >= REDRAW:
            update_display(line, raw=True, display_id=self._display_id)
            self._drawn = now


watch = CallWatch()


def register(shell):
    """Watch every cell of *shell*: any cell may call a slave (a sticky one, ``slave.modules``)."""
    watch.start()
    if _before_cell not in shell.events.callbacks["pre_run_cell"]:
        shell.events.register("pre_run_cell", _before_cell)
        shell.events.register("post_run_cell", _after_cell)


def _before_cell(_info=None):
    watch.arm()


def _after_cell(_result=None):
    watch.disarm()
