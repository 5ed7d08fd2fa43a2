"""Nothing an agent sends crashes the client: a peer on a real socket that answers `hello` properly
and then sends malformed replies gets clear errors ([splitbrain.bad_request] …), never a crash or
a hang, and the connection stays usable."""

import threading

import cbor2
import pytest
import zmq

import splitbrain

HELLO = {"resumed": False, "pid": 1, "platform": "linux", "python": "3.11.2 (hostile)", "hostname": "h",
         "sep": "/", "flavour": "posix", "executable": "/usr/bin/python3"}


class HostileAgent:
    """A ROUTER on tcp://127.0.0.1:* (plain text) answering each request with the next scripted
    reply: a callable (request header) -> list of frames to send after the routing id."""

    def __init__(self):
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.linger = 0
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.script = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                continue
            routing_id, head, *frames = self.socket.recv_multipart()
            self.routing_id = routing_id  # the client's connection, as our ROUTER named it
            request = cbor2.loads(head)
            if request["op"] == "hello":
                reply = [cbor2.dumps({"id": request["id"], "ok": True, "r": HELLO})]
            elif request["op"] in ("ping", "release", "bye", "cancel"):
                reply = [cbor2.dumps({"id": request["id"], "ok": True, "r": None})]
            elif self.script:
                reply = self.script.pop(0)(request)
            else:
                reply = [cbor2.dumps({"id": request["id"], "ok": True, "r": "fine"})]
            if reply:
                self.socket.send_multipart([routing_id, *reply])

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.socket.close()


@pytest.fixture
def hostile():
    agent = HostileAgent()
    box = splitbrain.connect(f"tcp://127.0.0.1:{agent.port}?key=none", name="hostile", timeout=1.0)
    yield agent, box
    box.close()
    agent.close()


def ok(result):
    return lambda request: [cbor2.dumps({"id": request["id"], "ok": True, "r": result})]


def call(box):
    return box._conn.request("call", {"o": 1, "a": ()})


@pytest.mark.parametrize("result, message", [
    ({"$zz": 1}, r"\[splitbrain\.bad_request\]"),
    ({"$F": [1, 1, 10]}, r"\[splitbrain\.bad_request\]"),
    ({"$r": "not an id"}, r"\[splitbrain\.bad_request\]"),
    ({"$i": "12x"}, r"\[splitbrain\.bad_request\]"),
    ({"$c": [1]}, r"\[splitbrain\.bad_request\]"),
    ({"$t": 5}, r"\[splitbrain\.bad_request\]"),
], ids=["unknown tag", "missing frames", "bad reference", "bad big int", "bad complex", "bad tuple"])
def test_a_malformed_value_is_a_protocol_error_and_the_connection_goes_on(hostile, result, message):
    agent, box = hostile
    agent.script.append(ok(result))
    with pytest.raises(splitbrain.ProtocolError, match=message):
        call(box)
    assert call(box) == "fine"


def test_a_reply_that_is_not_cbor_is_dropped_and_the_call_can_time_out_cleanly(hostile):
    agent, box = hostile
    agent.script.append(lambda request: [b"\xff\xfe not cbor"])
    # The agent still answers pings, so the call is alive as far as the channel can tell: only a
    # deadline (or Ctrl-C) ends it.
    with pytest.raises(TimeoutError, match=r"\[splitbrain\.timeout\] hostile \(tcp://127\.0\.0\.1:\d+\) "
                                           r"did not reply within 0\.5 s"):
        box._conn.request("call", {"o": 1, "a": ()}, 0.5)
    assert call(box) == "fine"


def test_an_error_reply_without_an_error_map_still_raises(hostile):
    agent, box = hostile
    agent.script.append(lambda request: [cbor2.dumps({"id": request["id"], "ok": False, "e": "oops"})])
    with pytest.raises(Exception):
        call(box)
    assert call(box) == "fine"


def test_replies_to_unknown_ids_and_malformed_events_are_ignored(hostile, capsys):
    agent, box = hostile

    def noisy(request):
        agent.socket.send_multipart([agent.routing_id, cbor2.dumps({"id": 999999, "ok": True, "r": 1})])
        agent.socket.send_multipart([agent.routing_id, cbor2.dumps({"ev": "out", "fd": "x", "d": 5})])
        agent.socket.send_multipart([agent.routing_id, cbor2.dumps({"ev": "out", "fd": 1, "d": b"kept\n"})])
        return [cbor2.dumps({"id": request["id"], "ok": True, "r": "after noise"})]

    agent.script.append(noisy)
    assert call(box) == "after noise"
    assert capsys.readouterr().out == "kept\n"
