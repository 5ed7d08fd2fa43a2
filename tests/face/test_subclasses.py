"""A local class derived from a routed module's class acts where its context says, as the class does.

test_subprocess's `class RecordingPopen(subprocess.Popen)`, `PopenNoDestructor`, a lab script's own
Popen: defined at import (the master active) or inside a slave's context, its inherited methods are
copies of the master's whose os, open and _fork_exec route (splitbrain/_routing.py, `_routed_class`).
Without that they were the master's code with the real `os`, refused inside a context by the audit hook
([splitbrain.local_io_in_slave_context]), or mixing the master's descriptors with the slave's."""

import os
import subprocess
import sys
from unittest import mock

import pytest

PARENT = [sys.executable, "-c", "import os; print(os.getppid())"]


class RecordingPopen(subprocess.Popen):
    """Defined at import, outside any context, as test suites and libraries do."""

    made = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.made.append(self)


def _parent_of_child(popen_class):
    p = popen_class(PARENT, stdout=subprocess.PIPE)
    try:
        out = p.stdout.read()
    finally:
        p.stdout.close()
    assert p.wait() == 0
    return int(out)


def test_a_subclass_made_at_import_runs_its_child_on_the_slave_inside_the_context(linux_box):
    RecordingPopen.made.clear()
    with linux_box:
        assert _parent_of_child(RecordingPopen) == linux_box.pid
    assert len(RecordingPopen.made) == 1  # its own __init__ ran, here
    assert isinstance(RecordingPopen.made[0], RecordingPopen)
    assert _parent_of_child(RecordingPopen) == os.getpid()  # outside, the master's Popen as before


def test_a_subclass_made_inside_the_context_does_the_same(linux_box):
    with linux_box:
        class Quiet(subprocess.Popen):
            def __del__(self):
                pass

        assert _parent_of_child(Quiet) == linux_box.pid
    assert _parent_of_child(Quiet) == os.getpid()


def test_a_program_that_cannot_start_raises_through_the_slaves_error_pipe(linux_box):
    with linux_box:
        with pytest.raises(FileNotFoundError) as caught:
            RecordingPopen(["/nonexistent/splitbrain-program"])
    assert caught.value.filename == "/nonexistent/splitbrain-program"


def test_pass_fds_keeps_the_slaves_descriptor_in_the_child(linux_box):
    with linux_box:
        r, w = os.pipe()
        assert int(w) == w.remote  # what subprocess sends as fds_to_keep: the slave's number
        p = RecordingPopen([sys.executable, "-c", f"import os; os.write({w}, b'through the pipe')"], pass_fds=[w])
        assert p.wait() == 0
        os.close(w)
        assert os.read(r, 100) == b"through the pipe"
        os.close(r)


def test_a_mocked_fork_exec_of_the_slaves_module_reaches_the_subclass(linux_box):
    def fail_like_exec(*args):
        os.write(args[13], b"OSError:%x:" % 21)  # EISDIR through the error pipe, as the child would
        return 0

    with linux_box:
        with mock.patch("subprocess._fork_exec", side_effect=fail_like_exec), \
                mock.patch("subprocess.os.waitpid", side_effect=ChildProcessError):
            with pytest.raises(IsADirectoryError):
                RecordingPopen(["anything"])
        assert _parent_of_child(RecordingPopen) == linux_box.pid  # both put back on the slave


def test_a_remote_classs_init_is_the_slaves(linux_box):
    with linux_box:
        argcount = subprocess.Popen.__init__.__code__.co_argcount
        with pytest.raises(TypeError):
            subprocess.Popen(*[0] * (argcount + 1))
    assert argcount == subprocess.Popen.__init__.__code__.co_argcount


def test_a_mock_set_on_the_slaves_class_reaches_the_subclass_there(linux_box):
    with linux_box:
        p = RecordingPopen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            with mock.patch.object(subprocess.Popen, "_wait", side_effect=KeyboardInterrupt) as waited:
                with pytest.raises(KeyboardInterrupt):
                    p.wait(timeout=5)
            assert waited.call_args_list[0] == mock.call(timeout=5)  # (then wait() gives it 0.25 s more)
        finally:
            p.kill()
        assert p.wait(timeout=30) == -9  # put back: the routed copy's _wait again
    with mock.patch.object(subprocess.Popen, "_wait", return_value=7):  # the master's class, outside
        assert RecordingPopen(["true"]).wait() == 7


def test_communicate_of_a_subclass_waits_on_the_slaves_pipes(linux_box):
    code = "import sys; data = sys.stdin.read(); print(data.upper()); print('on stderr', file=sys.stderr)"
    with linux_box:
        p = RecordingPopen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        out, err = p.communicate("through the slave", timeout=10)  # a selector on the slave's descriptors
    assert (out, err, p.returncode) == ("THROUGH THE SLAVE\n", "on stderr\n", 0)

