"""Issue 4 point 6: remote exceptions raise as the same built-in type (errno and filename kept), or
as RemoteError subclasses naming the remote type; the remote traceback is a note; local frames stay."""

import errno
import os
import traceback

import pytest

import splitbrain


def test_a_missing_file_raises_file_not_found_error_with_errno_and_filename(linux_box):
    with linux_box:
        with pytest.raises(FileNotFoundError) as caught:
            os.stat("/no/such/file")
    assert caught.value.errno == errno.ENOENT
    assert caught.value.filename == "/no/such/file"
    assert caught.value.strerror == "No such file or directory"


def test_two_filenames_are_kept(linux_box):
    with linux_box:
        with pytest.raises(FileNotFoundError) as caught:
            os.rename("/no/such/a", "/no/such/b")
    assert caught.value.filename == "/no/such/a"
    assert caught.value.filename2 == "/no/such/b"


def test_a_builtin_exception_keeps_its_type_and_args(linux_box):
    with pytest.raises(ValueError) as caught:
        linux_box.modules.builtins.int("not a number")
    assert caught.value.args == ("invalid literal for int() with base 10: 'not a number'",)


def test_an_exception_the_master_lacks_is_a_remote_error_subclass_naming_the_remote_type(linux_box, tmp_path):
    """(The master's own classes, json.JSONDecodeError included, arrive as themselves: test_classes.py.)"""
    (tmp_path / "plotter_only.py").write_text("class PlotterJam(Exception):\n    pass\n"
                                              "def jam():\n    raise PlotterJam('paper stuck')\n")
    linux_box.modules.site.addsitedir(str(tmp_path))
    with pytest.raises(splitbrain.RemoteError) as caught:
        linux_box.modules.plotter_only.jam()
    exc = caught.value
    assert type(exc).__name__ == "PlotterJam"
    assert exc.remote_type == "plotter_only.PlotterJam"
    assert exc.slave == "linux-box"
    assert "paper stuck" in str(exc)


def test_the_remote_traceback_is_a_note_naming_the_slave_and_local_frames_stay(linux_box):
    def call_remote():
        linux_box.modules.json.loads("{bad")

    with pytest.raises(ValueError) as caught:
        call_remote()
    notes = caught.value.__notes__
    assert notes[0].startswith("Remote traceback (on linux-box):")
    assert "json/decoder.py" in notes[0]
    local_frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert "call_remote" in local_frames


def test_system_exit_on_the_slave_does_not_stop_the_master(linux_box):
    with pytest.raises(splitbrain.RemoteError) as caught:
        linux_box.modules.sys.exit(3)
    assert caught.value.remote_type == "builtins.SystemExit"


def test_an_unknown_remote_attribute_is_an_attribute_error(linux_box):
    with linux_box:
        assert not hasattr(os, "no_such_function")


def test_splitbrains_own_frames_are_hidden_from_ipython_tracebacks(linux_box):
    """IPython (and pytest) leave out frames whose locals set __tracebackhide__: a user sees the
    line that called the slave, not the proxy plumbing under it."""
    def splitbrain_frames(exc):
        tb, found = exc.__traceback__, []
        while tb is not None:
            if os.sep + "splitbrain" + os.sep in tb.tb_frame.f_code.co_filename:
                found.append(tb.tb_frame)
            tb = tb.tb_next
        return found

    with pytest.raises(FileNotFoundError) as explicit:
        linux_box.modules.os.stat("/no/such/file")
    with pytest.raises(FileNotFoundError) as routed:
        with linux_box:
            with open("/no/such/file"):
                pass
    for caught in (explicit, routed):
        frames = splitbrain_frames(caught.value)
        assert frames, "the call went through splitbrain's Python layer"
        assert all(frame.f_locals.get("__tracebackhide__") for frame in frames), \
            [frame.f_code.co_name for frame in frames]
