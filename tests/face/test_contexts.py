"""Issue 4 point 3: contexts are a ContextVar — they nest, restore on exceptions, are per thread and
per asyncio task, a new thread starts local, and entering/leaving does not touch sys.modules."""

import asyncio
import os
import sys
import threading

import pytest

import splitbrain

LOCAL_PID = os.getpid()


def test_outside_any_context_the_master_is_active():
    assert splitbrain.current() is None
    assert os.getpid() == LOCAL_PID


def test_with_slave_makes_it_current_and_routes_os_there(linux_box):
    with linux_box as entered:
        assert entered is linux_box
        assert splitbrain.current() is linux_box
        assert os.getpid() == linux_box.pid
    assert splitbrain.current() is None
    assert os.getpid() == LOCAL_PID


def test_contexts_nest_and_local_returns_to_the_master_inside(linux_box, windows_box):
    with linux_box:
        with windows_box:
            assert splitbrain.current() is windows_box
            assert os.getpid() == windows_box.pid
            with splitbrain.local():
                assert splitbrain.current() is None
                assert os.getpid() == LOCAL_PID
            assert os.getpid() == windows_box.pid
        assert os.getpid() == linux_box.pid
    assert splitbrain.current() is None


def test_an_exception_leaving_a_context_restores_the_previous_one(linux_box, windows_box):
    with linux_box:
        with pytest.raises(ZeroDivisionError):
            with windows_box:
                1 / 0
        assert splitbrain.current() is linux_box
    assert splitbrain.current() is None


def test_a_new_thread_starts_local_and_threads_do_not_see_each_others_slave(linux_box, windows_box):
    seen = {}
    barrier = threading.Barrier(2, timeout=10)

    def worker(box, key):
        seen[key + "-start"] = splitbrain.current()
        with box:
            barrier.wait()  # both threads are inside their own slave's context now
            seen[key] = (splitbrain.current(), os.getpid())
            barrier.wait()

    with linux_box:
        threads = [threading.Thread(target=worker, args=(linux_box, "a")),
                   threading.Thread(target=worker, args=(windows_box, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert splitbrain.current() is linux_box
    assert seen["a-start"] is None and seen["b-start"] is None
    assert seen["a"] == (linux_box, linux_box.pid)
    assert seen["b"] == (windows_box, windows_box.pid)


def test_each_asyncio_task_has_its_own_slave(linux_box, windows_box):
    async def in_task(box):
        with box:
            await asyncio.sleep(0.01)  # the other task runs here with its own slave
            return splitbrain.current(), os.getpid()

    async def main():
        return await asyncio.gather(in_task(linux_box), in_task(windows_box))

    (a_slave, a_pid), (b_slave, b_pid) = asyncio.run(main())
    assert (a_slave, a_pid) == (linux_box, linux_box.pid)
    assert (b_slave, b_pid) == (windows_box, windows_box.pid)
    assert splitbrain.current() is None


def test_entering_a_context_neither_copies_nor_rebuilds_sys_modules(linux_box):
    modules_before = sys.modules
    entries_before = dict(sys.modules)
    with linux_box:
        assert sys.modules is modules_before
        assert all(sys.modules.get(name) is module for name, module in entries_before.items())
    assert sys.modules is modules_before


def test_activate_sets_the_slave_until_changed(linux_box):
    import contextvars

    def body():
        splitbrain.activate(linux_box)
        assert os.getpid() == linux_box.pid
        splitbrain.activate(None)
        assert os.getpid() == LOCAL_PID

    contextvars.copy_context().run(body)
    assert splitbrain.current() is None
