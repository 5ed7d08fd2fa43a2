"""Issue 11 point 3: plain records travel by value and arrive as the master's own type, so reading
their fields costs no round trip; `subprocess.run([...]).returncode` is one round trip."""

import os
import pwd
import grp
import shutil
import subprocess
import time

import pytest


def test_subprocess_run_returncode_is_one_round_trip(linux_box):
    linux_box.modules.subprocess  # imported on the slave beforehand: the import is a round trip of its own
    linux_box.stats()  # sends the session's pending releases: a batch of them is a message of its own
    with linux_box:
        before = linux_box.requests
        returncode = subprocess.run(["true"]).returncode
        # SHALL: the call is the only round trip; the record's fields are read here
        assert linux_box.requests - before == 1
        assert returncode == 0


def test_a_completed_process_arrives_as_the_local_type_with_its_fields(linux_box):
    local_type = subprocess.CompletedProcess
    with linux_box:
        done = subprocess.run(["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True)
        assert type(done) is local_type  # not the slave's class, which subprocess.CompletedProcess is in here
    assert (done.args, done.returncode, done.stdout, done.stderr) == (
        ["sh", "-c", "echo out; echo err >&2; exit 3"], 3, b"out\n", b"err\n")
    with pytest.raises(subprocess.CalledProcessError) as raised:
        done.check_returncode()
    assert raised.value.returncode == 3 and raised.value.stderr == b"err\n"


def test_a_completed_process_with_text_output_keeps_str(linux_box):
    done = linux_box.modules.subprocess.run(["echo", "hi"], capture_output=True, text=True)
    assert type(done) is subprocess.CompletedProcess
    assert done.stdout == "hi\n" and done.stderr == ""


def test_a_completed_process_whose_fields_are_not_plain_stays_a_reference(linux_box):
    import splitbrain
    sub = linux_box.modules.subprocess
    path = linux_box.modules.pathlib.Path("/bin/true")  # a remote Path: the record holds an object
    done = sub.CompletedProcess(args=(path,), returncode=0)  # a tuple: its items cross one by one
    assert isinstance(done, splitbrain.RemoteObject)
    assert done.returncode == 0


def test_a_record_passed_to_the_slave_arrives_as_its_type_there(linux_box):
    record = subprocess.CompletedProcess(["x"], 5, b"o", None)
    assert linux_box.modules.builtins.repr(record) == repr(record)
    assert linux_box.modules.operator.attrgetter("returncode")(record) == 5


def test_disk_usage_arrives_as_the_local_named_tuple(linux_box):
    usage = linux_box.modules.shutil.disk_usage("/")
    assert type(usage) is type(shutil.disk_usage("/"))
    assert usage.total == shutil.disk_usage("/").total


@pytest.mark.parametrize("module, call, local_type", [
    ("os", lambda m: m.terminal_size((80, 24)), os.terminal_size),
    ("time", lambda m: m.localtime(0), time.struct_time),
    ("pwd", lambda m: m.getpwuid(os.getuid()), pwd.struct_passwd),
    ("grp", lambda m: m.getgrgid(os.getgid()), grp.struct_group),
    ("os", lambda m: m.times(), os.times_result),
], ids=["terminal_size", "struct_time", "struct_passwd", "struct_group", "times_result"])
def test_struct_sequences_arrive_as_the_local_type_in_one_round_trip(linux_box, module, call, local_type):
    remote_module = linux_box.modules[module]
    before = linux_box.requests
    value = call(remote_module)
    assert linux_box.requests - before == 1
    assert type(value) is local_type
    assert value[0] == getattr(value, local_type.__match_args__[0])
