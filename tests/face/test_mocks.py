"""What the fidelity suite (tests/fidelity) needed from routing: mocks of routed functions put
the slave's original back, standard-library objects cross by name, builtin classes come back as
the master's, and introspection over sys.modules sees AttributeError, not ImportError."""

import selectors
import subprocess
import sys
import tempfile
import unittest.mock

import splitbrain
from splitbrain import RemoteObject


def test_a_routed_modules_dict_inside_a_context_is_the_slaves(linux_box):
    import os
    with linux_box:
        namespace = os.__dict__
        assert isinstance(namespace, RemoteObject)
        assert "chdir" in namespace and namespace["getpid"]() == linux_box.pid
    assert os.__dict__["getpid"]() != linux_box.pid


def test_mock_patch_of_a_routed_function_puts_the_slaves_original_back(linux_box):
    import os
    with linux_box:
        original = os.getcwd()
        patcher = unittest.mock.patch("os.getpid", os.getppid)  # a remote function as the new value
        patcher.start()
        try:
            assert os.getpid() == os.getppid()
        finally:
            patcher.stop()
        assert os.getpid() == linux_box.pid and os.getcwd() == original


def test_a_standard_library_function_or_class_crosses_by_name(linux_box):
    remote_subprocess = linux_box.modules.subprocess
    saved = remote_subprocess._PopenSelector
    remote_subprocess._PopenSelector = selectors.SelectSelector  # the slave's SelectSelector
    try:
        assert repr(remote_subprocess._PopenSelector) == f"<remote {linux_box.name}: {selectors.SelectSelector!r}>"
        assert isinstance(remote_subprocess._PopenSelector, RemoteObject)
        with linux_box:
            assert subprocess.run(["true"]).returncode == 0  # Popen still works with it there
    finally:
        remote_subprocess._PopenSelector = saved
    assert sorted(["bb", "a"], key=len) == ["a", "bb"]
    assert linux_box.modules.builtins.sorted(["bb", "a"], key=len) == ["a", "bb"]  # the slave's len


def test_a_builtin_class_from_a_slave_is_the_masters(linux_box):
    assert linux_box.modules.tempfile._infer_return_type("x") is str
    assert linux_box.modules.tempfile._infer_return_type(b"x") is bytes
    with linux_box:
        assert tempfile._infer_return_type(None) is str


def test_introspection_of_a_routed_module_the_slave_lacks_is_an_attribute_error(linux_box):
    with linux_box:
        for module in list(sys.modules.values()):
            getattr(module, "__warningregistry__", None)  # unittest's assertWarns does this
        assert subprocess.os.getpid() == linux_box.pid  # a module subprocess imported, not a submodule


def test_setting_an_attribute_of_a_remote_class_reaches_it(linux_box):
    with linux_box:
        popen = subprocess.Popen
        popen.splitbrain_probe = 5
        assert linux_box.modules.subprocess.Popen.splitbrain_probe == 5
        del popen.splitbrain_probe
        assert not hasattr(linux_box.modules.subprocess.Popen, "splitbrain_probe")
    assert splitbrain.current() is None


def test_a_mock_sent_to_a_slave_is_refused_not_sent_as_its_fspath_text(linux_box):
    import os
    with linux_box:
        patcher = unittest.mock.patch("os.chdir", side_effect=AssertionError("no chdir"))
        try:
            patcher.start()
        except TypeError as refused:
            assert "[splitbrain.not_transferable]" in str(refused)
        else:  # sent by reference (issue 9 point 3): then it is the mock there, not a str
            try:
                assert not isinstance(linux_box.modules.os.chdir, str)
            finally:
                patcher.stop()
        assert callable(os.chdir) and not isinstance(linux_box.modules.os.chdir, str)
        os.chdir(os.getcwd())


def test_a_builtin_class_sent_to_a_slave_is_refused_and_the_session_lives_on(linux_box):
    import os
    popen = linux_box.modules.subprocess.Popen._sb_resolve()
    try:
        popen[bytes]
    except TypeError as refused:  # no class crosses by value yet
        assert "[splitbrain.not_transferable]" in str(refused)
    with linux_box:
        assert os.getpid() == linux_box.pid
