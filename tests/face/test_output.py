"""Issue 4 point 7: what the slave writes — Python prints and child processes — appears on the
local sys.stdout / sys.stderr, in order."""

import collections
import io
import subprocess
import sys
import threading

from conftest import run_python, wait_until


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
        real_stdout = sys.stdout
        arrivals = []

        class Stamped:
            def write(self, text):
                arrivals.append((time.monotonic(), text))
                return len(text)

            def flush(self):
                pass

        sys.stdout = Stamped()
        with box:
            subprocess.run(["sh", "-c", "echo tick; sleep 1; echo tock"])
        returned = time.monotonic()
        sys.stdout = real_stdout
        tick = next(t for t, text in arrivals if "tick" in text)
        print("".join(text for _, text in arrivals), end="")
        print("tick came before the call returned by at least 0.8 s:", returned - tick >= 0.8)
        box.close()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["tick", "tock", "tick came before the call returned by at least 0.8 s: True"]


def test_each_threads_remote_output_is_written_by_that_thread(fresh_box, monkeypatch):
    """Two threads on one slave: the output of a call is written by the thread that waits for it,
    also while another thread waits on the same connection (and could read it off the socket)."""
    written = collections.defaultdict(str)
    lock = threading.Lock()

    class PerThread(io.TextIOBase):
        def write(self, text):
            with lock:
                written[threading.current_thread().name] += text
            return len(text)

    monkeypatch.setattr(sys, "stdout", PerThread())
    chatty_started = threading.Event()

    def chatty():
        with fresh_box:
            subprocess.run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo A$i; sleep 0.05; done"])

    def quiet():
        chatty_started.wait(10)
        for _ in range(5):
            with fresh_box:
                subprocess.run(["echo", "B"])

    threads = [threading.Thread(target=chatty, name="chatty"), threading.Thread(target=quiet, name="quiet")]
    for t in threads:
        t.start()
    wait_until(lambda: "A1" in "".join(written.values()), what="the chatty call's first line")
    chatty_started.set()
    for t in threads:
        t.join(30)
    assert written["chatty"] == "".join(f"A{i}\n" for i in range(1, 11))
    assert written["quiet"] == "B\n" * 5
