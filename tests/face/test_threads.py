"""The channel is shared by threads: concurrent callers of one slave each get their own replies;
threads on different slaves run in parallel (what %%slave a b does)."""

import os
import threading
import time

import splitbrain
from conftest import wait_until


def test_eight_threads_calling_one_slave_each_get_their_own_replies(linux_box):
    errors = []
    results = {}

    def worker(n):
        try:
            echo = linux_box.modules.builtins.str
            results[n] = all(echo(f"{n}-{i}") == f"{n}-{i}" for i in range(200))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert results == {n: True for n in range(8)}


def test_two_slaves_sleep_in_parallel_threads(linux_box, windows_box):
    slept = {}

    def nap(box):
        start = time.monotonic()
        box.modules.time.sleep(0.5)  # time is not routed: sleep on the slave explicitly
        slept[box.name] = time.monotonic() - start

    start = time.monotonic()
    threads = [threading.Thread(target=nap, args=(box,)) for box in (linux_box, windows_box)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(slept) == ["linux-box", "windows-box"]
    assert all(seconds >= 0.5 for seconds in slept.values()), slept
    assert time.monotonic() - start < 0.9


def test_cancel_all_interrupts_calls_waiting_in_other_threads(fresh_box):
    caught = []

    def sleeper():
        try:
            fresh_box.modules.time.sleep(30)
        except KeyboardInterrupt:
            caught.append("KeyboardInterrupt")

    thread = threading.Thread(target=sleeper)
    before = fresh_box.requests
    thread.start()
    wait_until(lambda: fresh_box.requests > before, what="the sleep request to be sent")
    deadline = time.monotonic() + 5
    while thread.is_alive() and time.monotonic() < deadline:
        fresh_box.cancel_all()  # a cancel that overtakes the call answers false: try again
        thread.join(0.1)
    assert caught == ["KeyboardInterrupt"]
    assert fresh_box.modules.os.getpid() == fresh_box.pid
