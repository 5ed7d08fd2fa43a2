"""The channel's routing id is the session token: a client that reconnects with it (a new socket,
as after a network drop) gets its session back, objects included."""

import os

import splitbrain
from splitbrain import _core


def test_a_client_reconnecting_with_its_session_token_resumes_its_session(fresh_box):
    kept = fresh_box.modules.io.BytesIO(b"kept across the reconnect")
    public, secret = splitbrain.client_keys()
    again = _core.Connection(fresh_box.name, fresh_box.address, fresh_box.public_key, public, secret,
                             fresh_box._session, 5.0, fresh_box)
    try:
        info = again.request("hello", {"session": fresh_box._session.hex()})
        assert info["resumed"] is True
        assert info["pid"] == fresh_box.pid  # the same worker
        assert again.request("call", {"o": kept._sb_oid, "path": ["getvalue"], "a": ()}) == b"kept across the reconnect"
    finally:
        again.close()


def test_a_new_session_token_gets_a_new_worker(fresh_box):
    public, secret = splitbrain.client_keys()
    token = os.urandom(16)
    other = _core.Connection("other", fresh_box.address, fresh_box.public_key, public, secret, token,
                             5.0, fresh_box)
    try:
        info = other.request("hello", {"session": token.hex()})
        assert info["resumed"] is False
        assert info["pid"] != fresh_box.pid
    finally:
        other.request("bye", None, 2.0)
        other.close()
