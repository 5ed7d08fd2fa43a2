"""Compact errors: a cell's traceback shows the user's frames and the slave's, not our machinery.

IPython formats every error of a cell through ``shell.InteractiveTB.structured_traceback`` (xeus-python's
shell is IPython's ``InteractiveShell``; its ``_showtraceback`` only stores the result). We wrap that
method and hand it a traceback with the frames no user wrote taken out:

* IPython's magic dispatch (``run_cell_magic``, ``run_line_magic``), the transformed line that
  calls it (``get_ipython().run_cell_magic('slave', ...)``) and IPython's frames below it, the
  ``<decorator-gen-N>`` frames of ``magic_arguments``, and this package's frames (``magics.py``);
* the splitbrain package's frames (``_proxy.py``, ``_routing.py``, ...) when the error is one
  splitbrain reports (it has an id), one raised on a slave, an ``OSError`` or an interrupt; any other
  error (a bug of ours) keeps them, so it still shows where it happened.

IPython's own ``__tracebackhide__`` is not enough: it never hides the last frame, which for a remote
error is always ``_proxy.py``, and it prints "[... skipping hidden N frame]" for the others.

The remote traceback (the note ``Remote traceback (on NAME):``) loses its ``Traceback (most recent call
last):`` line, the agent's own call stub and the repeated exception line. An error with no user frame
left (a mistake on a magic's line, ``%slave connect`` to a bad target) is the exception's line and
its notes, as short as a ``UsageError``.
"""

import os
import re
import types

import splitbrain

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_SPLITBRAIN_DIR = os.path.dirname(os.path.abspath(splitbrain.__file__))
_REMOTE_HEADER = re.compile(r"^Remote traceback \(on (?P<name>[^)]*)\):\n", re.S)
# The frame every remote call starts in: the worker's compiled call line (agent/src/worker.cpp).
_AGENT_STUB = '  File "<splitbrain>", line 1, in <module>\n'


def _ipython_dir():
    import IPython
    return os.path.dirname(os.path.abspath(IPython.__file__))


_IPYTHON_DIR = _ipython_dir()


def _inside(path, directory):
    return path == directory or path.startswith(directory + os.sep)


def _frames(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


def _is_magic_dispatch(code):
    return _inside(code.co_filename, _IPYTHON_DIR) and code.co_name in ("run_cell_magic", "run_line_magic")


def _is_machinery(code, in_magic, ours_too):
    filename = code.co_filename if code.co_filename.startswith("<") else os.path.abspath(code.co_filename)
    if filename.startswith("<decorator-gen-") or _inside(filename, _PACKAGE_DIR):
        return True
    if in_magic and _inside(filename, _IPYTHON_DIR):
        return True  # magic_arguments, the Magics class; IPython code a cell calls itself stays
    return ours_too and _inside(filename, _SPLITBRAIN_DIR)


def passes_through_splitbrain(exc):
    """True for an error splitbrain reports (it carries an id), one raised on a slave, and the
    errors our routing only passes on (a local ``open`` that fails, an interrupt in a wait)."""
    if isinstance(getattr(exc, "code", None), str):
        return True
    if isinstance(exc, (splitbrain.RemoteError, OSError, KeyboardInterrupt)):
        return True
    return any(_REMOTE_HEADER.match(n) or n.startswith("(raised on ") for n in _notes(exc))


def _notes(exc):
    notes = getattr(exc, "__notes__", None)
    return [n for n in notes if isinstance(n, str)] if isinstance(notes, list) else []


def user_frames(exc, tb):
    """The entries of *tb* a user wrote, as a new traceback chain (None if there are none)."""
    entries = list(_frames(tb))
    dispatch = [i for i, entry in enumerate(entries) if _is_magic_dispatch(entry.tb_frame.f_code)]
    if dispatch:
        # The transformed cell line that called the magic, and the dispatch itself.
        entries = entries[dispatch[-1] + 1:]
    ours_too = passes_through_splitbrain(exc)
    kept = []
    called_by_machinery = False
    for entry in entries:
        code = entry.tb_frame.f_code
        if _is_machinery(code, bool(dispatch), ours_too):
            called_by_machinery = True
        elif _is_cell(code.co_filename):
            called_by_machinery = False
            kept.append(entry)
        elif not called_by_machinery:
            kept.append(entry)
        # else: library code our machinery called (threading under a fan-out's wait): ours too
    chain = None
    for entry in reversed(kept):
        chain = types.TracebackType(chain, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return chain


def compact_note(note):
    """A ``Remote traceback (on NAME):`` note without the lines nobody needs; other notes as they are."""
    match = _REMOTE_HEADER.match(note)
    if not match:
        return note
    lines = note[match.end():].splitlines(keepends=True)
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        lines = lines[1:]
    while lines and lines[0] == _AGENT_STUB:  # the call stub, and open()'s helper named as it (_files)
        lines = lines[1:]
    # The last line repeats the exception the cell shows already; continuation lines of a
    # multi-line message are not indented, frames are.
    while lines and not lines[-1].startswith(" "):
        lines.pop()
    if not lines:
        return f"(raised on {match.group('name')})"
    return f"Remote traceback (on {match.group('name')}):\n" + "".join(lines).rstrip("\n")


class _CompactNotes:
    """The exception's notes compacted while IPython formats it (and put back afterwards)."""

    def __init__(self, exc):
        self._exc = exc
        self._saved = None

    def __enter__(self):
        notes = getattr(self._exc, "__notes__", None)
        if isinstance(notes, list):
            self._saved = notes
            try:
                self._exc.__notes__ = [compact_note(n) if isinstance(n, str) else n for n in notes]
            except (AttributeError, TypeError):
                self._saved = None
        return self

    def __exit__(self, *exc_info):
        if self._saved is not None:
            self._exc.__notes__ = self._saved
        return False


def one_line(exc):
    """``Type: message`` and the exception's (compacted) notes: an error without frames worth showing."""
    head = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return "\n".join([head] + [compact_note(n) for n in _notes(exc)])


def summary(name, exc):
    """One slave's part of a failed or interrupted fan-out: its error in a line (or a few, with a
    remote traceback) and the cell line it came from."""
    where = ""
    for entry in _frames(user_frames(exc, exc.__traceback__)):
        label = _cell_label(entry.tb_frame.f_code.co_filename)
        if label is not None:
            where = f" ({label}, line {entry.tb_lineno})"
    if isinstance(exc, KeyboardInterrupt):
        return f"[{name}] interrupted{where}\n"
    head, _, notes = one_line(exc).partition("\n")
    # "(raised on NAME)" says what the [NAME] prefix says already
    notes = [line for line in notes.splitlines() if line != f"(raised on {name})"]
    return "\n".join([f"[{name}] {head}{where}"] + ["    " + line for line in notes]) + "\n"


def _is_cell(filename):
    return _cell_label(filename) is not None


def _cell_label(filename):
    """``Cell In[N]`` for a notebook cell's code, else None."""
    from IPython import get_ipython
    shell = get_ipython()
    try:
        found = shell.compile.format_code_name(filename)
    except AttributeError:
        return None
    return f"{found[0]} {found[1]}" if found else None


def install(shell):
    """Wrap the shell's traceback formatter so that cells' errors are compact (see the module)."""
    formatter = shell.InteractiveTB
    original = formatter.structured_traceback

    def structured_traceback(etype, evalue, etb=None, tb_offset=None, *args, **kwargs):
        if not isinstance(evalue, BaseException):
            return original(etype, evalue, etb, tb_offset, *args, **kwargs)
        offset = tb_offset if tb_offset is not None else formatter.tb_offset
        entries = list(_frames(etb))
        head, rest = entries[:offset], entries[offset:]
        if not rest:
            return original(etype, evalue, etb, tb_offset, *args, **kwargs)
        kept = user_frames(evalue, rest[0])
        if kept is None:
            return [one_line(evalue)]
        chain = kept
        for entry in reversed(head):
            chain = types.TracebackType(chain, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
        with _CompactNotes(evalue):
            return original(etype, evalue, chain, tb_offset, *args, **kwargs)

    formatter.structured_traceback = structured_traceback
