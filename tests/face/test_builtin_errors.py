"""Issue 11 point 2: a remote error of a built-in exception type is made by _core itself (the ERROR
comes without its "mro", and the client builds the exception in C instead of calling the Slave's
_error). What user code sees SHALL be what the Python way (`_errors.exception_from_reply`) makes of
the same reply: each case runs both ways on one session and the exceptions are compared field by
field, notes included; the cases the shortcut leaves to Python (a __dict__, chaining, a remote-only
class, a protocol error) are compared too."""
import errno
import os
import traceback

import pytest

import splitbrain


def _raise_oserror_with_two_filenames():
    import errno
    raise OSError(errno.EACCES, "custom words", "first", None, "second")


def _raise_oserror_of_an_errno_with_a_subclass():
    raise OSError(2, "gone")  # OSError.__new__ makes it a FileNotFoundError, there and here


def _raise_oserror_without_errno():
    raise OSError("only text")


def _raise_unicode_decode_error():
    b"\xff".decode("utf-8")


def _raise_unicode_decode_error_with_other_args():
    e = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    e.args = ("one argument",)  # UnicodeDecodeError(*args) fails: the class is made with the text
    raise e


def _raise_key_error():
    return {}["missing"]


def _raise_timeout_without_args():
    raise TimeoutError


def _raise_with_an_attribute():
    e = ValueError("with a detail")
    e.detail = 5  # a __dict__: the Python way
    raise e


def _raise_chained():
    try:
        {}["inner"]
    except KeyError as inner:
        raise ValueError("outer") from inner


def _raise_stop_iteration():
    raise StopIteration(5)


def _raise_a_class_of_the_slave():
    class PlotterJam(Exception):
        pass
    raise PlotterJam("paper stuck")


CASES = {
    "open a missing file": lambda box, p: open(p),
    "rename: two filenames": lambda box, p: os.rename(p, p + ".b"),
    "stat a bytes path": lambda box, p: os.stat(os.fsencode(p)),
    "listdir of a file": lambda box, p: os.listdir("/etc/hostname"),
    "int() of text": lambda box, p: box.modules.builtins.int("not a number"),
    "OSError with filename2": lambda box, p: box.run(_raise_oserror_with_two_filenames),
    "OSError(2, ...)": lambda box, p: box.run(_raise_oserror_of_an_errno_with_a_subclass),
    "OSError without errno": lambda box, p: box.run(_raise_oserror_without_errno),
    "UnicodeDecodeError": lambda box, p: box.run(_raise_unicode_decode_error),
    "UnicodeDecodeError, other args": lambda box, p: box.run(_raise_unicode_decode_error_with_other_args),
    "KeyError": lambda box, p: box.run(_raise_key_error),
    "TimeoutError()": lambda box, p: box.run(_raise_timeout_without_args),
    "StopIteration(5)": lambda box, p: box.run(_raise_stop_iteration),
    "ValueError with an attribute": lambda box, p: box.run(_raise_with_an_attribute),
    "chained": lambda box, p: box.run(_raise_chained),
    "a class of the slave": lambda box, p: box.run(_raise_a_class_of_the_slave),
    "a protocol error": lambda box, p: box._conn.request("no_such_op", None),
}


def _facts(exc):
    return {
        "type": type(exc), "args": exc.args, "str": str(exc), "repr": repr(exc),
        "errno": getattr(exc, "errno", None), "strerror": getattr(exc, "strerror", None),
        "filename": getattr(exc, "filename", None), "filename2": getattr(exc, "filename2", None),
        "dict": {k: v for k, v in vars(exc).items() if k != "slave"},
        "cause": exc.__cause__, "context": exc.__context__, "suppress": exc.__suppress_context__,
        "remote": (getattr(exc, "remote_type", None), getattr(exc, "remote_args", None),
                   getattr(exc, "remote_traceback", None)),
        "value": getattr(exc, "value", None),
    }


def _caught(box, case, path):
    try:
        with box:
            CASES[case](box, path)
    except BaseException as exc:  # noqa: BLE001 (whatever it is, both ways must agree)
        return exc
    raise AssertionError(f"{case}: nothing raised")


@pytest.mark.parametrize("case", list(CASES))
def test_a_remote_error_is_the_same_made_by_core_or_by_the_slaves_error_hook(linux_box, tmp_path, case):
    path = str(tmp_path / "no-such-file")
    fast = _caught(linux_box, case, path)
    linux_box._conn.raise_builtin_errors(None)  # the Python way: every ERROR through Slave._error
    try:
        slow = _caught(linux_box, case, path)
    finally:
        linux_box._conn.raise_builtin_errors(linux_box.name)
    assert _facts(fast) == _facts(slow)
    if not isinstance(fast, splitbrain.ProtocolError):
        assert fast.__notes__[0].startswith("Remote traceback (on linux-box):\n"), fast.__notes__
        assert not fast.__notes__[0].endswith("\n")


def test_a_remote_file_not_found_error_shows_the_slave_and_the_local_frames(linux_box, tmp_path):
    missing = str(tmp_path / "no-such-file")

    def open_it():
        with linux_box:
            open(missing)

    with pytest.raises(FileNotFoundError) as caught:
        open_it()
    exc = caught.value
    assert (exc.errno, exc.strerror, exc.filename, exc.filename2) == (errno.ENOENT, "No such file or directory",
                                                                     missing, None)
    assert exc.args == (errno.ENOENT, "No such file or directory")
    assert str(exc) == f"[Errno 2] No such file or directory: {missing!r}"
    [note] = exc.__notes__
    assert note.startswith("Remote traceback (on linux-box):\nTraceback (most recent call last):\n"), note
    assert note.endswith(f"FileNotFoundError: [Errno 2] No such file or directory: {missing!r}"), note
    shown = "".join(traceback.format_exception(exc))
    assert "in open_it" in shown and note in shown
    # the worker's call stub has no source line to show: the text is the one the worker wrote itself
    assert 'File "<splitbrain>", line 1, in <module>' in note


def test_raise_builtin_errors_takes_a_name_or_none(linux_box):
    with pytest.raises(TypeError):
        linux_box._conn.raise_builtin_errors(3)


def test_the_shortcut_is_taken_for_a_fixed_builtin_and_only_for_it(linux_box, tmp_path):
    """The note's name tells who made the exception: _core (the name given to raise_builtin_errors)
    or Slave._error (the slave's own name)."""
    missing = str(tmp_path / "no-such-file")
    linux_box._conn.raise_builtin_errors("made-by-core")
    try:
        made_by = {}
        for case in ("open a missing file", "KeyError", "UnicodeDecodeError, other args", "ValueError with an attribute",
                     "chained", "a class of the slave"):
            made_by[case] = _caught(linux_box, case, missing).__notes__[0].split(")")[0]
    finally:
        linux_box._conn.raise_builtin_errors(linux_box.name)
    assert made_by == {
        "open a missing file": "Remote traceback (on made-by-core",
        "KeyError": "Remote traceback (on made-by-core",
        "UnicodeDecodeError, other args": "Remote traceback (on made-by-core",
        "ValueError with an attribute": "Remote traceback (on linux-box",  # a __dict__
        "chained": "Remote traceback (on made-by-core",  # the chain is in the text; the class is ValueError
        "a class of the slave": "Remote traceback (on linux-box",  # its MRO comes with it
    }
