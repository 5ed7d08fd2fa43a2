"""Issue 4 point 7: what the slave writes — Python prints and child processes — appears on the
local sys.stdout / sys.stderr, in order."""

import subprocess

from conftest import run_python


def test_remote_print_and_child_output_reach_the_local_stdout_in_order(linux_box, capsys):
    with linux_box:
        linux_box.modules.builtins.print("first, from Python on linux-box")
        subprocess.run(["sh", "-c", "echo second, from a child; echo to-stderr >&2"])
        linux_box.modules.builtins.print("third")
    captured = capsys.readouterr()
    assert captured.out == "first, from Python on linux-box\nsecond, from a child\nthird\n"
    assert captured.err == "to-stderr\n"


def test_output_goes_to_whatever_sys_stdout_is_at_that_moment(linux_box):
    import contextlib
    import io
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        linux_box.modules.builtins.print("caught")
    assert buffer.getvalue() == "caught\n"


def test_invalid_utf8_is_replaced_and_split_characters_are_joined(linux_box, capsys):
    write = linux_box.modules.os.write
    write(1, b"caf\xc3")   # the first byte of é ...
    write(1, b"\xa9 \xff\n")  # ... its second byte, then a byte that is never UTF-8
    linux_box.ping()
    assert capsys.readouterr().out == "café \ufffd\n"


def test_output_reaches_a_plain_python_processes_stdout_live():
    done = run_python("""
        import splitbrain, subprocess, sys, time
        box = splitbrain.spawn("printer")
        with box:
            subprocess.run(["sh", "-c", "for i in 1 2 3; do echo line $i; done"])
        print("local after")
        box.close()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["line 1", "line 2", "line 3", "local after"]
