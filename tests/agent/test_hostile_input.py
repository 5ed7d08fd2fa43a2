"""Nothing a client sends crashes the agent: every bad request gets an error reply with a stable
id, and the agent (and the session) go on."""
import cbor2
import pytest

from conftest import Agent


def error_of(client, header_bytes, frames=()):
    client.socket.send_multipart([header_bytes, *frames])
    header, _ = client.receive(timeout=5)
    assert header["ok"] is False, header
    return header


def assert_alive(client):
    assert client.request("ping")["ok"]
    assert client.ok("stats")["objects"] >= 0


@pytest.mark.parametrize("raw", [
    b"",
    b"\xff\x00garbage",
    b"\xa1\x61",                      # truncated map
    b"\xa0\x00",                      # trailing bytes
    cbor2.dumps([1, 2, 3]),           # not a map
    cbor2.dumps("op"),
    b"\x81" * 100000 + b"\x00",       # nesting that would exhaust a recursive parser
    b"\xc6" * 100000 + b"\x00",       # nested tags
    b"\xbf" + b"\x9f" * 5000,         # unterminated indefinite containers
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a length beyond the frame
], ids=lambda raw: repr(raw[:12]))
def test_malformed_headers_get_bad_request_with_id_0(client, raw):
    reply = error_of(client, raw)
    assert reply["id"] == 0
    assert reply["e"]["code"] == "bad_request"
    assert reply["e"]["msg"].startswith("[splitbrain.bad_request] ")
    assert_alive(client)


@pytest.mark.parametrize("header, code", [
    ({"op": "ping"}, "bad_request"),
    ({"id": "1", "op": "ping"}, "bad_request"),
    ({"id": -4, "op": "ping"}, "bad_request"),
    ({"id": 0, "op": "ping"}, "bad_request"),
    ({"id": 7}, "bad_request"),
    ({"id": 7, "op": 12}, "bad_request"),
    ({"id": 7, "op": "exec"}, "unknown_op"),
    ({"id": 7, "op": "x" * 1000}, "unknown_op"),
    ({"id": 7, "op": "getattr", "o": {"$t": 5}, "name": "x"}, "bad_request"),
    ({"id": 7, "op": "getattr", "o": {"$r": 999999}, "name": "x"}, "bad_object"),
    ({"id": 7, "op": "getattr", "o": {"$r": "1"}, "name": "x"}, "bad_object"),
    ({"id": 7, "op": "getattr", "name": "x"}, "bad_request"),
    ({"id": 7, "op": "getattr", "o": {"$r": 1}, "name": 5}, "bad_request"),
    ({"id": 7, "op": "call", "o": {"$r": 1}, "path": "getcwd"}, "bad_request"),
    ({"id": 7, "op": "call", "o": {"$r": 1}, "path": [1]}, "bad_request"),
    ({"id": 7, "op": "call", "o": {"$r": 1}, "a": {"$t": []}}, "bad_request"),
    ({"id": 7, "op": "call", "o": {"$r": 1}, "path": ["getcwd"], "k": [1]}, "bad_request"),
    ({"id": 7, "op": "call", "o": {"$zz": 1}}, "bad_request"),
    ({"id": 7, "op": "call", "o": {"$F": [0, 5, 10]}}, "bad_request"),
    ({"id": 7, "op": "call", "o": {"$i": "12e4"}}, "bad_request"),
    ({"id": 7, "op": "cmp", "o": {"$r": 1}, "cmp": "spaceship", "v": 1}, "bad_request"),
    ({"id": 7, "op": "iter", "o": {"$r": 1}, "n": -1}, "bad_request"),
    ({"id": 7, "op": "release", "ids": [[1]]}, "bad_request"),
    ({"id": 7, "op": "release", "ids": 5}, "bad_request"),
    ({"id": 7, "op": "cancel", "target": "x"}, "bad_request"),
    ({"id": 7, "op": "hello", "session": 5}, "bad_request"),
    ({"id": 7, "op": "hello", "session": ""}, "bad_request"),
    ({"id": 7, "op": "exit", "o": {"$r": 1}, "exc": "boom"}, "bad_request"),
], ids=lambda value: repr(value)[:60] if isinstance(value, dict) else value)
def test_wrong_fields_get_a_coded_error_reply(client, header, code):
    client.module("os")  # oid 1 exists, so errors are about the field, not the object
    reply = error_of(client, cbor2.dumps({"session": client.session, **header}))
    assert reply["id"] == (header["id"] if isinstance(header.get("id"), int) and header["id"] > 0 else 0)
    assert reply["e"]["code"] == code, reply["e"]
    assert reply["e"]["type"] == "splitbrain.ProtocolError"
    assert_alive(client)


def test_an_oversized_header_is_refused(client):
    reply = error_of(client, cbor2.dumps({"id": 3, "op": "ping", "pad": b"x" * (1 << 20)}))
    assert reply["e"]["code"] == "bad_request"
    assert "exceeds" in reply["e"]["msg"]
    assert_alive(client)


def test_a_message_over_max_message_is_refused(tmp_path):
    agent = Agent(tmp_path / "a", extra=["--max-message", "200000"])
    try:
        client = agent.client()
        reply = error_of(client, cbor2.dumps({"id": 9, "op": "ping"}), [b"x" * 150000, b"y" * 100000])
        assert reply["id"] == 9 and "--max-message" in reply["e"]["msg"]
        assert_alive(client)
        client.close()
    finally:
        agent.stop()


def test_frames_that_do_not_match_the_header_are_refused(client):
    copy = client.module("copy")
    header = {"id": 3, "op": "call", "o": copy.wire(), "path": ["copy"], "a": [{"$F": [0, 2, 10]}]}
    reply = error_of(client, cbor2.dumps({"session": client.session, **header}), [b"12345"])
    assert reply["e"]["code"] == "bad_request"
    assert_alive(client)


def test_operations_before_hello_get_no_session(agent):
    client = agent.client(hello=False)
    reply = client.request("import", name="os")
    assert reply["e"]["code"] == "no_session"
    assert reply["e"]["msg"] == ('[splitbrain.no_session] no session: send "hello" first, and name its token in '
                                 'field "session" of every request (a session is only its own client key\'s)')
    assert client.request("ping")["ok"]
    client.close()


def test_invalid_utf8_and_wrong_value_types_are_errors_not_crashes(client):
    builtins = client.module("builtins")
    bad_text = cbor2.dumps({"session": client.session, "id": 3, "op": "call", "o": builtins.wire(), "path": ["len"], "a": ["x"]})
    bad_text = bad_text.replace(b"\x61x", b"\x61\xff")
    reply = error_of(client, bad_text)
    assert reply["id"] == 3
    assert reply["e"]["type"] in ("builtins.UnicodeDecodeError", "splitbrain.ProtocolError")
    unhashable = {"session": client.session, "id": 4, "op": "call", "o": builtins.wire(), "path": ["len"], "a": [{"$s": [[1]]}]}
    assert error_of(client, cbor2.dumps(unhashable))["e"]["type"] == "builtins.TypeError"
    assert_alive(client)


def test_a_flood_of_garbage_leaves_the_agent_serving(agent):
    client = agent.client()
    for i in range(300):
        client.socket.send_multipart([bytes([i % 256]) * (i % 7 + 1), b"frame"])
    errors = 0
    while errors < 300:
        header, _ = client.receive(timeout=5)
        assert header["ok"] is False
        errors += 1
    assert_alive(client)
    assert agent.process.poll() is None
    client.close()


def test_a_single_frame_over_max_message_gets_a_reply_not_a_dropped_connection(tmp_path):
    # libzmq's per-frame limit would close the connection without a reply and the call would hang.
    agent = Agent(tmp_path / "a", extra=["--max-message", "200000"])
    try:
        client = agent.client()
        reply = error_of(client, cbor2.dumps({"id": 9, "op": "ping"}), [b"x" * 250000])
        assert reply["id"] == 9
        assert reply["e"]["code"] == "bad_request"
        assert reply["e"]["msg"] == "[splitbrain.bad_request] message of 250013 bytes exceeds --max-message 200000"
        assert_alive(client)
        client.close()
    finally:
        agent.stop()


def test_a_message_of_many_small_frames_over_max_message_is_refused(tmp_path):
    agent = Agent(tmp_path / "a", extra=["--max-message", "200000"])
    try:
        client = agent.client()
        reply = error_of(client, cbor2.dumps({"id": 5, "op": "ping"}), [b"z" * 1000] * 1000)
        assert reply["id"] == 5 and "exceeds --max-message 200000" in reply["e"]["msg"]
        assert_alive(client)
        client.close()
    finally:
        agent.stop()


def test_a_session_token_of_any_bytes_works_without_keys(tmp_path):
    """The token is the client's choice: with --insecure (no client key) its bytes, valid UTF-8 or
    not, also name the session's lease holder, and the session's calls work (before, every call
    failed with the worker's UnicodeDecodeError of the holder)."""
    agent = Agent(tmp_path / "agent", insecure=True)
    try:
        client = agent.client(session="Q" * 16, hello=False)
        placeholder = cbor2.dumps("Q" * 16)
        not_utf8 = placeholder[:1] + bytes.fromhex("d5cb902c560740a8a3fc916a7e2fff80")
        send = client.socket.send_multipart
        client.socket.send_multipart = lambda parts: send([parts[0].replace(placeholder, not_utf8), *parts[1:]])
        assert client.request("hello", session=client.session)["ok"]
        reply = client.call(client.module("os"), path=["getpid"])
        assert reply["ok"], reply.get("e")
        assert reply["r"] in agent.workers()
        client.close()
    finally:
        agent.stop()
