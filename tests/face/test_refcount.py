"""Issue 4 point 5: dropping proxies releases the remote objects (batched), proven end to end with
the agent's own count of live objects (after RPyC's tests/test_refcount.py)."""

import _thread
import gc
import threading

import pytest

import splitbrain
from conftest import wait_until


def test_dropped_proxies_are_released_on_the_agent(fresh_box):
    fresh_box.modules.builtins  # the module itself is a remote object we keep
    baseline = fresh_box.stats()["objects"]
    objects = [fresh_box.modules.builtins.object() for _ in range(100)]
    assert fresh_box.stats()["objects"] == baseline + 100
    del objects
    gc.collect()
    assert fresh_box.stats()["objects"] == baseline


def test_one_proxy_held_twice_is_released_once_both_are_gone(fresh_box):
    fresh_box.modules.sys
    baseline = fresh_box.stats()["objects"]
    stdout_a = fresh_box.modules.sys.stdout
    stdout_b = fresh_box.modules.sys.stdout
    assert stdout_a is stdout_b
    assert fresh_box.stats()["objects"] == baseline + 1
    del stdout_a
    gc.collect()
    assert fresh_box.stats()["objects"] == baseline + 1  # stdout_b still holds it
    del stdout_b
    gc.collect()
    assert fresh_box.stats()["objects"] == baseline


def test_releases_are_sent_in_batches_not_one_message_each(fresh_box):
    objects = [fresh_box.modules.builtins.object() for _ in range(64)]
    before = fresh_box.requests
    del objects
    gc.collect()
    fresh_box.stats()  # flushes the queued releases, then asks
    assert fresh_box.requests - before == 2
    wait_until(lambda: fresh_box.stats()["objects"] <= 3, what="objects released")


def test_a_remote_exceptions_non_plain_args_are_released_with_the_exception(fresh_box):
    builtins = fresh_box.modules.builtins
    builtins.exec("class Thing: pass\nclass Boom(Exception): pass")
    baseline = fresh_box.stats()["objects"]
    for _ in range(3):
        with pytest.raises(splitbrain.RemoteError) as caught:
            builtins.eval("(_ for _ in ()).throw(Boom(Thing(), 1))")
        assert caught.value.remote_args[0]._sb_type == "__main__.Thing"
        assert fresh_box.stats()["objects"] == baseline + 1
        del caught
        gc.collect()
        assert fresh_box.stats()["objects"] == baseline


def test_references_in_a_reply_nobody_waits_for_any_more_are_released(fresh_box):
    """A call given up on (timeout, interrupt) still answers later; the objects in that answer —
    a result or an exception's args — are released, not kept on the agent for ever."""
    builtins = fresh_box.modules.builtins
    builtins.exec("import time\nclass Thing: pass\nclass Boom(Exception): pass")
    remote_eval = builtins.eval._sb_resolve()
    baseline = fresh_box.stats()["objects"]
    for late in ("(time.sleep(0.3), Thing())[1]", "(time.sleep(0.3), (_ for _ in ()).throw(Boom(Thing())))"):
        with pytest.raises(TimeoutError):
            # the public API has no per-call timeout: ask the connection directly
            fresh_box._conn.request("call", {"o": remote_eval._sb_oid, "a": (late,)}, 0.05)
        wait_until(lambda: fresh_box.stats()["objects"] == baseline, what="the late reply's object to be released")


def test_references_in_the_answer_to_an_interrupted_call_are_released(fresh_box):
    builtins = fresh_box.modules.builtins
    builtins.exec("import time\n"
                  "class Thing: pass\n"
                  "class Boom(Exception): pass\n"
                  "def stubborn():\n"
                  "    try:\n"
                  "        time.sleep(30)\n"
                  "    except KeyboardInterrupt:\n"
                  "        raise Boom(Thing())\n")
    stubborn = builtins.eval("stubborn")
    baseline = fresh_box.stats()["objects"]
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        stubborn()
    timer.join()
    wait_until(lambda: fresh_box.stats()["objects"] == baseline, what="the interrupted call's object to be released")
