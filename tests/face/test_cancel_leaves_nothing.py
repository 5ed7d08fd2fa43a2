"""Issue 10 point 9 (cancels): a cancelled call leaves no grandchild. A cancelled
run(["sh", "-c", "sleep 60 & wait"]) kills the shell (subprocess.run does); the sleep it started
in the background must go too, in a storm of cancels as in one."""
import _thread
import os
import threading
import time

import pytest

from conftest import wait_until
from processes import live_processes

MARK = f"60.{os.getpid() % 100000:05d}1"  # sleep 60.xxxxx1: ours, not another test's sleep


def live_sleeps():
    """Pids of the running (not zombie) `sleep MARK` processes on this machine."""
    return live_processes([b"sleep", MARK.encode()])


def test_issue_10_a_storm_of_cancelled_background_sleeps_leaves_none(fresh_box):
    subprocess = fresh_box.modules.subprocess
    assert live_sleeps() == []
    for n in range(20):
        before = len(live_sleeps())

        def interrupt_once_the_sleep_runs():
            wait_until(lambda: len(live_sleeps()) > before, 20, f"cancel {n}: the background sleep to start")
            _thread.interrupt_main()

        interrupter = threading.Thread(target=interrupt_once_the_sleep_runs)
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            try:
                subprocess.run(["sh", "-c", f"sleep {MARK} & wait"])
            finally:
                interrupter.join()
    # SHALL: nothing the cancelled calls started is left running.
    wait_until(lambda: live_sleeps() == [], 5, "no background sleep of a cancelled call left",
               diagnose=lambda: f": {live_sleeps()}")
    # and the session works on, its own children reaped
    assert fresh_box.modules.os.getpid() == fresh_box.pid
    done = subprocess.run(["sh", "-c", "sleep 0.1 & wait; echo ok"], capture_output=True, text=True)
    assert done.stdout == "ok\n"


def test_issue_10_a_background_process_of_a_call_that_was_not_cancelled_lives_on(fresh_box):
    popen = fresh_box.modules.subprocess.Popen(["sleep", MARK])
    try:
        with pytest.raises(KeyboardInterrupt):
            threading.Timer(0.3, _thread.interrupt_main).start()
            fresh_box.modules.time.sleep(30)  # a later call, cancelled: it started nothing
        assert popen.poll() is None
        assert len(live_sleeps()) == 1
    finally:
        popen.kill()
        popen.wait()
    wait_until(lambda: live_sleeps() == [], 5, "the Popen's sleep to end")
