"""Issue 9 point 1: classes behave as classes. An exception class reached through a routed or
slave-only module can be caught, raised and subclassed; a remote exception arrives as an instance
of the master's own class (rebuilt with its fields) or of a mirror of its bases;
isinstance/issubclass work with remote classes and objects."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import unittest

import pytest

import splitbrain

LOCAL_CALLED_PROCESS_ERROR = subprocess.CalledProcessError  # outside any context: the master's


def test_except_called_process_error_catches_a_failed_remote_command_with_its_fields(linux_box):
    with linux_box:
        try:
            subprocess.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=True, capture_output=True)
        except subprocess.CalledProcessError as caught:
            exc = caught
        else:
            pytest.fail("check=True did not raise")
    assert type(exc) is LOCAL_CALLED_PROCESS_ERROR
    assert exc.returncode == 3
    assert exc.cmd == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert exc.output == b"out\n"
    assert exc.stderr == b"err\n"
    assert "returned non-zero exit status 3" in str(exc)
    assert exc.__notes__[0].startswith("Remote traceback (on linux-box):")


def test_the_class_reached_through_a_routed_module_is_the_masters_own(linux_box):
    with linux_box:
        assert subprocess.CalledProcessError is LOCAL_CALLED_PROCESS_ERROR
        assert subprocess.TimeoutExpired is type(subprocess.TimeoutExpired(["x"], 1.0))
        assert socket.timeout is TimeoutError
        assert os.error is OSError


def test_timeout_expired_is_caught_with_its_fields(linux_box):
    with linux_box:
        with pytest.raises(subprocess.TimeoutExpired) as caught:
            subprocess.run(["sleep", "5"], timeout=0.2)
    assert 0 < caught.value.timeout <= 0.2  # what is left of it, as locally
    assert caught.value.cmd == ["sleep", "5"]


def test_assert_raises_and_raising_and_subclassing_a_routed_exception_class(linux_box):
    class Case(unittest.TestCase):
        def runTest(self):
            with linux_box:
                self.assertRaises(subprocess.CalledProcessError, subprocess.check_call, ["false"])
    result = unittest.TextTestRunner(stream=open(os.devnull, "w")).run(Case())
    assert result.wasSuccessful(), result.failures + result.errors

    with linux_box:
        class BuildFailed(subprocess.CalledProcessError):
            pass
        with pytest.raises(subprocess.CalledProcessError) as caught:
            raise BuildFailed(2, ["make"])
    assert caught.value.returncode == 2


def test_a_standard_library_exception_not_built_in_is_the_masters_class(linux_box):
    with pytest.raises(json.JSONDecodeError) as caught:
        linux_box.modules.json.loads("{bad")
    assert type(caught.value) is json.JSONDecodeError
    assert (caught.value.pos, caught.value.lineno, caught.value.colno) == (1, 1, 2)


@pytest.fixture
def instrument_errors(linux_box, tmp_path):
    """`instrument_errors`, importable on linux-box only, with an exception hierarchy."""
    (tmp_path / "instrument_errors.py").write_text(
        "import errno\n"
        "class DeviceError(IOError):\n"
        "    pass\n"
        "class DeviceTimeout(DeviceError):\n"
        "    pass\n"
        "def fail():\n"
        "    e = DeviceTimeout(errno.ETIMEDOUT, 'no answer', '/dev/ttyUSB0')\n"
        "    e.port = '/dev/ttyUSB0'\n"
        "    raise e\n")
    linux_box.modules.site.addsitedir(str(tmp_path))
    yield "instrument_errors"
    sys.modules.pop("instrument_errors", None)


def test_a_slave_only_exception_is_a_mirror_of_its_bases_that_except_catches(linux_box, instrument_errors):
    with linux_box:
        import instrument_errors
        try:
            instrument_errors.fail()
        except instrument_errors.DeviceError as caught:
            exc = caught
        timeout_class = instrument_errors.DeviceTimeout
        assert instrument_errors.DeviceTimeout is timeout_class  # one mirror per remote class
    assert type(exc) is timeout_class
    assert issubclass(timeout_class, OSError)
    assert isinstance(exc, splitbrain.RemoteError)  # existing `except splitbrain.RemoteError` still works
    assert exc.remote_type == "instrument_errors.DeviceTimeout"
    assert (exc.errno, exc.strerror, exc.filename) == (110, "no answer", "/dev/ttyUSB0")
    assert exc.port == "/dev/ttyUSB0"
    assert exc.slave == "linux-box"


def test_isinstance_and_issubclass_with_remote_classes_and_objects(linux_box, tmp_path):
    local_path = pathlib.PurePosixPath("/x")
    with linux_box:
        p = subprocess.Popen(["true"])
        p.wait()
        f = open(tmp_path / "f.txt", "w")
        assert isinstance(p, subprocess.Popen)
        assert not isinstance(f, subprocess.Popen)
        assert issubclass(subprocess.Popen, subprocess.Popen)
        assert isinstance(local_path, pathlib.PurePath)  # a local object: the master's twin answers
        assert not isinstance(3, pathlib.PurePath)
        entry = next(iter(os.scandir(tmp_path)))
        assert isinstance(entry, os.DirEntry)
        f.close()
    with pytest.raises(TypeError, match="arg 2 must be a type"):
        isinstance(p, linux_box.modules.os.getcwd)
