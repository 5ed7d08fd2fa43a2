"""Flow control against a real agent, with the suite's own client (it acknowledges nothing unless
told to): the output window, the ack operation, and the bound on what a session may queue
(docs/protocol.md, "Output and back-pressure"; agent/README.md, "Bounds")."""
import os
import time

from conftest import wait_until
from wire import Ref

MiB = 1 << 20
WINDOW = 8 * MiB
COST = 512  # what an output event costs besides its bytes


def test_ack_is_answered_by_the_worker_and_needs_at(client):
    assert client.request("ack", at=0) == {"id": 2, "ok": True, "r": None}
    reply = client.request("ack")
    assert not reply["ok"] and reply["e"]["code"] == "bad_request"


def drain(client, into):
    """Everything that arrives until nothing has for 1 s; output events go to *into*, replies are kept."""
    while (message := client.receive(timeout=1.0)) is not None:
        header, frames = message
        if "ev" in header:
            into.append(header)
        else:
            client.replies[header["id"]] = header


def test_a_client_that_acknowledges_nothing_gets_one_window_and_the_writer_waits_until_it_does(client):
    subprocess_ = client.module("subprocess")
    total = 32 * MiB
    request_id = next(client.ids)
    client.send({"id": request_id, "op": "call", "o": subprocess_.wire(), "path": ["run"],
                 "a": [["sh", "-c", f"head -c {total} /dev/zero"]]})
    events = []
    drain(client, events)
    # One window, and then nothing: the writer (head) is blocked on its full pipe, the call runs on.
    sent = sum(len(e["d"]) for e in events)
    assert events and events[-1]["at"] == sum(len(e["d"]) + COST for e in events)
    assert WINDOW - 64 * 1024 <= events[-1]["at"] < WINDOW + 65536 + COST
    assert sent < total and request_id not in client.replies
    # Each acknowledgement lets one more window through, until all of it and the reply came.
    while request_id not in client.replies:
        client.send({"id": next(client.ids), "op": "ack", "at": events[-1]["at"]})
        before = len(events)
        drain(client, events)
        assert len(events) > before or request_id in client.replies
    assert sum(len(e["d"]) for e in events) == total
    assert client.replies[request_id]["ok"]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_requests_queued_past_64_mib_are_refused_with_queue_full_and_the_worker_stays_small(client, tmp_path):
    subprocess_, builtins = client.module("subprocess"), client.module("builtins")
    go = tmp_path / "go"
    blocker = next(client.ids)
    client.send({"id": blocker, "op": "call", "o": subprocess_.wire(), "path": ["run"],
                 "a": [["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done"]]})
    block = os.urandom(16 * MiB)
    frames = [block[i:i + MiB] for i in range(0, len(block), MiB)]
    ids = []
    for _ in range(8):
        ids.append(next(client.ids))
        client.send({"id": ids[-1], "op": "call", "o": builtins.wire(), "path": ["len"],
                     "a": [{"$F": [0, len(frames), len(block)]}]}, frames)

    def refused():
        while (message := client.receive(timeout=0.1)) is not None:
            client.replies[message[0]["id"]] = message[0]
        return [i for i in ids if i in client.replies] if len(client.replies) >= 5 else None
    assert wait_until(refused, 60, "five refusals") == ids[3:]
    for i in ids[3:]:
        error = client.replies.pop(i)["e"]
        assert error["code"] == "queue_full"
        assert error["msg"] == (
            "[splitbrain.queue_full] the session already has 4 requests of 48 MiB waiting to run, and this one of "
            "16 MiB would pass the bound of 64 MiB; it was not run. Wait for earlier calls to finish, or send less "
            "at once")
    worker = client.info["pid"]
    assert rss_kb(worker) < 200 * 1024
    go.touch()
    assert client.wait_reply(blocker, 30)["ok"]
    for i in ids[:3]:
        assert client.wait_reply(i, 30)["r"] == 16 * MiB
    # The queue is free again: a request as large as before is admitted.
    assert client.value(builtins, block, path=["len"], timeout=30) == 16 * MiB


def acknowledging_until_reply(client, request_id, timeout):
    """Receives (and acknowledges, as a client that keeps up does) until request_id's reply; returns it."""
    deadline = time.monotonic() + timeout
    last_at = 0
    while request_id not in client.replies:
        assert time.monotonic() < deadline, f"no reply to {request_id} within {timeout} s"
        message = client.receive(timeout=0.2)
        if message is None:
            continue
        header, _ = message
        if "ev" in header:
            if header["at"] - last_at >= MiB:
                client.send({"id": next(client.ids), "op": "ack", "at": header["at"]})
                last_at = header["at"]
        else:
            client.replies[header["id"]] = header
    return client.replies.pop(request_id)


def test_a_background_writer_that_never_stops_does_not_hold_a_reply_back(client):
    # The reply waits only for the output written before it, not for the pipe to be empty.
    subprocess_, builtins = client.module("subprocess"), client.module("builtins")
    popen = client.call(subprocess_, ["sh", "-c", "while :; do echo background; done"], path=["Popen"])
    assert popen["ok"]
    writer = Ref(popen["r"])
    for _ in range(5):
        request_id = next(client.ids)
        client.send({"id": request_id, "op": "call", "o": builtins.wire(), "path": ["len"], "a": ["four"]})
        assert acknowledging_until_reply(client, request_id, 10)["r"] == 4
    request_id = next(client.ids)
    client.send({"id": request_id, "op": "call", "o": writer.wire(), "path": ["kill"]})
    assert acknowledging_until_reply(client, request_id, 10)["ok"]
