"""Issue 4 point 8: Ctrl-C while waiting on a remote call cancels it on the slave and raises
KeyboardInterrupt locally within 1 s; the session stays usable."""

import _thread
import os
import signal
import threading
import time

import pytest

from conftest import run_python


def test_interrupting_a_remote_sleep_raises_keyboard_interrupt_within_a_second(fresh_box):
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        fresh_box.modules.time.sleep(60)
    elapsed = time.monotonic() - start
    timer.join()
    assert elapsed < 1.3  # 0.3 s until the interrupt + at most 1 s
    # the session is usable afterwards, and the remote sleep is over
    assert fresh_box.modules.os.getpid() == fresh_box.pid
    assert fresh_box.ping() < 0.5


def test_a_sigint_from_another_process_interrupts_the_remote_call():
    done = run_python("""
        import os, signal, subprocess, sys, time, splitbrain
        box = splitbrain.spawn("sleepy")
        killer = subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -INT {os.getpid()}"])
        start = time.monotonic()
        try:
            with box:
                subprocess.run(["sleep", "60"])   # on the slave: time is not routed, subprocess is
        except KeyboardInterrupt:
            killer.wait()
            print("interrupted within a second of the SIGINT", time.monotonic() - start < 1.5)
        with box:
            print("usable", os.getpid() == box.pid)
        killer.wait()
        box.close()
    """, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["interrupted within a second of the SIGINT True", "usable True"]


def test_a_remote_subprocess_is_interrupted_too(fresh_box):
    import subprocess
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with fresh_box:
            subprocess.run(["sleep", "60"])
    timer.join()
    assert time.monotonic() - start < 1.3
    with fresh_box:
        assert os.getpid() == fresh_box.pid
