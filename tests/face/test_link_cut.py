"""Issue 10 point 3: a call the client gave up on does not run later. A request not yet delivered
when the client gives up is dropped when it arrives (its "until" has passed), not run after the link
comes back; the error says whether the request had reached the agent, so that the caller knows
whether a retry could do the thing twice. The agent runs in a network namespace; the link is cut by
taking our end of its veth pair down, scaled to seconds by a liveness timeout of 1 s."""
import os
import pathlib
import sys
import threading
import time

import pytest

import splitbrain
from splitbrain import _registry, _spawn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import netns  # noqa: E402
from conftest import wait_until  # noqa: E402


@pytest.fixture(params=["relay", "direct"])
def far_box(tmp_path, request, monkeypatch):
    """A Slave whose agent runs behind a veth pair that the test can cut, with a 1 s liveness; its
    calls go through the agent's relay or the direct connection to its worker, which must say the
    same (a direct call caught by a cut is agent_unreachable too, with whether it reached)."""
    netns.require()
    monkeypatch.setenv("SPLITBRAIN_DIRECT", "1" if request.param == "direct" else "0")
    host = netns.Namespace()
    agent = None
    box = None
    try:
        client_public, _ = _registry.client_keys()
        binary = host.wrapper(str(tmp_path), _spawn.agent_binary())
        agent = _spawn.Agent(tmp_path / "agent", authorized=[client_public], listen=f"tcp://{host.ns_ip}:*",
                             binary=binary, exit_with=os.getpid())
        box = splitbrain.connect(f"{agent.address}?key={agent.public_key}", name="far", timeout=1.0)
        box.link = host
        if request.param == "direct":
            wait_until(lambda: box.modules.os.getpid() and box._conn.direct, 10, "the direct connection")
        yield box
    finally:
        if box is not None:
            host.restore()
            box.close()
        if agent is not None:
            agent.stop()
        host.close()


def first_success(call, what, timeout=40):
    """call()'s result once it no longer fails with AgentUnreachable (the link coming back)."""
    failures = []

    def attempt():
        try:
            return (call(),)
        except splitbrain.AgentUnreachable as exc:
            failures.append(str(exc))
            return None
    return wait_until(attempt, timeout, what, interval=0.05, diagnose=lambda: f"; last: {failures[-1:]}")[0]


def test_issue_10_calls_given_up_during_a_link_cut_never_run_after_it(far_box, tmp_path):
    marks = tmp_path / "marks"
    remote_os = far_box.modules.os
    remote_os.mkdir(str(marks))  # the agent shares our file system: what ran leaves a directory
    assert remote_os.path.isdir(str(marks))

    far_box.link.cut()
    for n in range(4):
        start = time.monotonic()
        with pytest.raises(splitbrain.AgentUnreachable) as caught:
            remote_os.mkdir(str(marks / f"call-{n}"))
        # SHALL: the error says the request had not reached the agent, and that it will not run.
        assert str(caught.value) == (
            f"[splitbrain.agent_unreachable] far ({far_box.address}) did not answer for 1 s; is "
            f"splitbrain-agent running there? The call was not delivered (far acknowledged nothing sent after "
            f"it), and is dropped if it arrives later: it did not run.")
        assert time.monotonic() - start < 3.0
    time.sleep(0.5)  # the link stays down a while after the last give-up: the cut lasts ~5 s
    far_box.link.restore()

    # Once a call gets through again, everything sent before it has arrived and been dealt with
    # (the agent takes a session's requests in order).
    assert first_success(lambda: remote_os.getpid(), "a call through the restored link") == far_box.pid
    assert sorted(p.name for p in marks.iterdir()) == []
    assert remote_os.listdir(str(marks)) == []  # the session is usable, and still nothing ran


def test_issue_10_a_call_that_reached_the_agent_says_it_may_still_be_running(far_box, tmp_path):
    mark = tmp_path / "ran"
    far_box.modules.os.getpid()
    code = f"import time\ntime.sleep(2.5)\nopen({str(mark)!r}, 'w').close()\n"
    cutter = threading.Timer(1.2, far_box.link.cut)  # the call is running (pings answered) when the link goes
    cutter.start()
    try:
        with pytest.raises(splitbrain.AgentUnreachable) as caught:
            far_box.modules.builtins.exec(code)
    finally:
        cutter.join()
    assert str(caught.value).endswith(" The call reached far and may still be running there."), str(caught.value)
    far_box.link.restore()
    # It did run on: the caller was told so.
    wait_until(mark.exists, 30, "the call that had reached the agent to finish there")
