"""Issue 4 point 5: dropping proxies releases the remote objects (batched), proven end to end with
the agent's own count of live objects (after RPyC's tests/test_refcount.py)."""

import gc

from conftest import wait_for


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
    wait_for(lambda: fresh_box.stats()["objects"] <= 3, what="objects released")
