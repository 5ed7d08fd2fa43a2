"""Issue 9 points 5, 7 and 8: a slave's file objects behave, to the master's code, as a local file does.

Each case runs the same code on the master and inside a slave's context and compares what user code
sees: the io classes (``isinstance(f, io.IOBase)``), ``os.PathLike``, an explicit ``f.__del__()``
(tempfile's ResourceWarning), the same object from ``tempfile.gettempdir()``, ``mock.patch("io.open")``,
and numpy's C IO given a remote file (a clear error, the client intact).
"""

import gc
import io
import os
import tempfile
import unittest.mock as mock
import warnings

import pytest

import splitbrain

LOCAL_IO = "[splitbrain.local_io_in_slave_context]"


def both(box):
    """The master (no context), then *box*'s context."""
    yield splitbrain.local()
    yield box


# -- io classes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, kwargs, abc", [
    ("w", {}, io.TextIOBase), ("wb", {}, io.BufferedIOBase), ("w+b", {}, io.BufferedIOBase),
    ("wb", {"buffering": 0}, io.RawIOBase)], ids=["text", "buffered", "random", "raw"])
def test_a_remote_file_is_of_the_io_classes_its_local_twin_is_of(linux_box, tmp_path, mode, kwargs, abc):
    for place, where in zip(("master", "slave"), both(linux_box)):
        with where:
            with open(tmp_path / f"{place}.bin", mode, **kwargs) as f:
                kinds = [isinstance(f, cls) for cls in (io.IOBase, io.RawIOBase, io.BufferedIOBase, io.TextIOBase)]
                assert isinstance(f, abc), (place, type(f))
                assert not isinstance(f, os.PathLike), place
                if place == "master":
                    expected = kinds
                else:
                    assert type(f) is not io.TextIOWrapper and isinstance(f, splitbrain.RemoteObject)
                    assert kinds == expected


def test_a_remote_spooled_temporary_file_is_an_iobase_and_other_remote_objects_are_not(linux_box):
    with linux_box:
        spooled = tempfile.SpooledTemporaryFile(max_size=10)
        assert isinstance(spooled, splitbrain.RemoteObject)
        assert isinstance(spooled, io.IOBase) and not isinstance(spooled, io.TextIOBase)
        spooled.close()
        other = linux_box.modules.builtins.object()
        assert not isinstance(other, io.IOBase)


def test_os_fspath_of_a_remote_file_fails_as_it_does_locally(linux_box, tmp_path):
    with linux_box:
        with open(tmp_path / "f.txt", "w") as f:
            with pytest.raises(TypeError):
                os.fspath(f)


# -- an explicit __del__ is the remote object's; a dying proxy still releases ----------------------------

@pytest.mark.parametrize("max_size", [10, 2], ids=["unrolled", "rolled"])
def test_calling_del_of_a_remote_object_runs_its_own_del_there(linux_box, max_size):
    with linux_box:
        f = tempfile.SpooledTemporaryFile(max_size=max_size)
        f.write(b"foo")
        with pytest.warns(ResourceWarning, match="Unclosed file"):
            f.__del__()  # SpooledTemporaryFile.__del__ on the slave: warns and closes
        assert f.closed
        f.__del__()  # closed: no warning, as locally


def test_a_proxy_that_dies_releases_its_remote_object_once(fresh_box):
    fresh_box.modules.builtins
    baseline = fresh_box.stats()["objects"]
    objects = [fresh_box.modules.builtins.object() for _ in range(10)]
    assert fresh_box.stats()["objects"] == baseline + 10
    del objects
    gc.collect()
    assert fresh_box.stats()["objects"] == baseline
    cycle = [fresh_box.modules.builtins.object()]
    cycle.append(cycle)  # released by the collector, not by its refcount
    assert fresh_box.stats()["objects"] == baseline + 1
    del cycle
    gc.collect()
    assert fresh_box.stats()["objects"] == baseline


# -- the same text is the same object -----------------------------------------------------------------------

def test_gettempdir_gives_the_same_object_each_time_as_locally(linux_box):
    for where in both(linux_box):
        with where:
            a, b = tempfile.gettempdir(), tempfile.gettempdir()
            assert a is b
            assert tempfile.gettempdirb() == os.fsencode(a)
    with linux_box:
        saved = tempfile.tempdir
        tempfile.tempdir = "/nonexistent-but-set"
        try:
            assert tempfile.gettempdir() == "/nonexistent-but-set"  # tempfile's own cache decides, still
        finally:
            tempfile.tempdir = saved
        assert tempfile.gettempdir() != "/nonexistent-but-set"


# -- mock.patch("io.open") reaches the code that calls io.open -------------------------------------------

def test_patching_io_open_inside_a_context_patches_the_slaves_io_open(linux_box, tmp_path):
    with linux_box:
        os.mkdir(tmp_path / "d")
        with mock.patch("tempfile._TemporaryFileWrapper") as wrapper, \
                mock.patch("io.open", mock.mock_open()) as opened:
            wrapper.side_effect = ValueError("wrapper refused")
            with pytest.raises(ValueError, match="wrapper refused"):
                tempfile.NamedTemporaryFile(dir=str(tmp_path / "d"))  # the slave's tempfile calls _io.open
        opened().close.assert_called()  # tempfile closed what the patched io.open gave it
        assert os.listdir(tmp_path / "d") == []
        with tempfile.NamedTemporaryFile(dir=str(tmp_path / "d")) as real:  # the slave's own io.open again
            assert isinstance(real, splitbrain.RemoteObject)
            real.write(b"x")
        assert linux_box.modules.io.open is not opened
    assert io.open is splitbrain._routing.open


# -- numpy's C IO on a slave's file: a clear error, the client intact -----------------------------------------

@pytest.mark.parametrize("form", ["path", "file object"])
def test_numpy_tofile_and_fromfile_of_a_slaves_file_are_refused_and_the_client_is_intact(linux_box, tmp_path, form):
    numpy = pytest.importorskip("numpy")
    local = open(tmp_path / "master.txt", "w+")  # one of the master's own descriptors
    local.write("mine")
    local.flush()
    target = tmp_path / f"x-{form.replace(' ', '-')}.bin"
    with linux_box:
        if form == "path":
            with pytest.raises(RuntimeError) as written:
                numpy.arange(3).tofile(str(target))
            with pytest.raises(RuntimeError) as read:
                numpy.fromfile(str(target))
        else:
            with open(target, "wb") as f:
                with pytest.raises(RuntimeError) as written:
                    numpy.arange(3).tofile(f)
                f.write(numpy.arange(3).tobytes())  # what the message says to do instead
            with open(target, "rb") as f:
                with pytest.raises(RuntimeError) as read:
                    numpy.fromfile(f, dtype=numpy.int64)
                f.seek(0)
                assert numpy.frombuffer(f.read(), dtype=numpy.int64).tolist() == [0, 1, 2]
        assert os.path.exists(target)
    for caught in (written, read):
        text = str(caught.value)
        assert text.startswith(LOCAL_IO) and "os.dup(" in text and linux_box.name in text, text
        assert "numpy" in text and "f.write(array.tobytes())" in text
    assert linux_box.ping() > 0
    with linux_box:
        assert os.getcwd()
    local.seek(0)
    assert local.read() == "mine"
    local.close()
