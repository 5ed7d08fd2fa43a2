"""A killed agent turns a pending or new call into [splitbrain.agent_unreachable] within the
liveness timeout, never a hang."""

import os
import signal
import threading
import time

import pytest

import splitbrain


def test_a_killed_agent_is_reported_unreachable_within_the_liveness_timeout():
    box = splitbrain.spawn("doomed", liveness=1.0)
    try:
        os.killpg(box._agent.process.pid, signal.SIGKILL)  # the supervisor and its workers
        box._agent.process.wait()
        start = time.monotonic()
        with pytest.raises(splitbrain.AgentUnreachable) as caught:
            box.modules.os.getpid()
        elapsed = time.monotonic() - start
        assert str(caught.value) == (f"[splitbrain.agent_unreachable] doomed ({box.address}) did not answer for "
                                     f"1 s; is splitbrain-agent running there?")
        assert elapsed < 2.5
        assert isinstance(caught.value, ConnectionError)
    finally:
        box.close()


def test_a_call_pending_when_the_agent_dies_fails_too():
    box = splitbrain.spawn("doomed-while-busy", liveness=1.0)
    try:
        killer = threading.Timer(0.3, lambda: os.killpg(box._agent.process.pid, signal.SIGKILL))
        killer.start()
        start = time.monotonic()
        with pytest.raises(splitbrain.AgentUnreachable):
            box.modules.time.sleep(30)
        killer.join()
        assert time.monotonic() - start < 3.0
    finally:
        box.close()


def test_a_long_remote_call_is_not_mistaken_for_a_dead_agent():
    # pings answered by the supervisor keep a 2 s call alive past a 1 s liveness timeout
    box = splitbrain.spawn("patient", liveness=1.0)
    try:
        box.modules.time.sleep(2.2)
        assert box.ping() < 0.5
    finally:
        box.close()
