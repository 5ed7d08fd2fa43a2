"""Issue 4 point 5: plain data crosses by value, everything else by reference; a proxy passed back
to its own slave is the original object, to another slave a clear TypeError."""

import os
import pathlib

import pytest

import splitbrain

PLAIN = [
    None, True, 7, -2**70, 2.5, 1 + 2j, "text", b"bytes", bytearray(b"ba"), b"x" * 200_000,
    (1, "two", (3.0,)), [1, [2, 3]], {"a": 1, "b": [2]}, {1, 2}, frozenset({"f"}),
]


@pytest.mark.parametrize("value", PLAIN, ids=lambda v: type(v).__name__)
def test_plain_data_comes_back_by_value_with_its_type(linux_box, value):
    copy = linux_box.modules.copy.copy
    result = copy(value)
    assert type(result) is type(value)
    assert result == value


def test_a_struct_sequence_arrives_as_the_local_type(linux_box):
    result = linux_box.modules.os.stat("/")
    assert type(result) is os.stat_result
    assert result.st_ino == os.stat("/").st_ino


def test_a_struct_sequence_arrives_as_the_local_type_inside_a_context_too(linux_box):
    local_type = os.stat_result
    with linux_box:
        result = os.stat("/")
        assert type(result) is local_type  # not the slave's class, which os.stat_result is in here
        assert type(linux_box.modules.time.localtime()).__name__ == "struct_time"


def test_other_objects_arrive_as_references(linux_box):
    stdout = linux_box.modules.sys.stdout
    assert isinstance(stdout, splitbrain.RemoteObject)
    assert linux_box.modules.sys.stdout is stdout  # one proxy per remote object


def test_a_proxy_passed_back_to_its_slave_is_the_original_object(linux_box):
    stdout = linux_box.modules.sys.stdout
    assert linux_box.modules.operator.is_(stdout, linux_box.modules.sys.stdout) is True
    assert linux_box.modules.builtins.isinstance(stdout, linux_box.modules.io.TextIOWrapper) is True


def test_a_proxy_passed_to_another_slave_is_a_clear_type_error(linux_box, windows_box):
    stdout = linux_box.modules.sys.stdout
    with pytest.raises(TypeError, match=r"\[splitbrain\.wrong_slave\] a remote _io\.TextIOWrapper of linux-box "
                                        r"cannot be passed to windows-box"):
        windows_box.modules.builtins.repr(stdout)


def test_a_local_object_that_is_not_plain_data_is_sent_by_reference(linux_box):
    # issue 9 point 3: the slave uses the master's object where it lives (tests/face/test_local_references.py)
    thing = object()
    assert linux_box.modules.builtins.repr(thing) == repr(thing)


def test_a_local_path_is_sent_as_its_text(linux_box, tmp_path):
    assert linux_box.modules.os.path.isdir(pathlib.Path(tmp_path)) is True
