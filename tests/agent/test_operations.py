"""Every operation of docs/protocol.md against a real agent, and the by-value table end to end."""
import math
import os
import time

import cbor2
import pytest

from wire import Ref, box, same, unbox


def test_hello_describes_the_slave(client):
    info = client.info
    assert info["resumed"] is False
    assert info["platform"] == "linux"
    assert info["python"].startswith("3.11")
    assert info["sep"] == "/" and info["flavour"] == "posix"
    assert info["hostname"] == os.uname().nodename
    assert info["pid"] > 0 and info["pid"] != os.getpid()
    assert info["executable"].endswith("python3") or info["executable"].endswith("python")


def test_ping_is_answered_with_null(client):
    assert client.request("ping") == {"id": 2, "ok": True, "r": None}


def test_import_returns_callables_constants_and_submodules(client):
    result = client.ok("import", name="os")
    assert result["mod"]["t"] == "builtins.module"
    assert {"getcwd", "listdir", "stat"} <= set(result["callables"])
    consts = unbox(result["consts"], [])
    assert consts["sep"] == "/" and consts["name"] == "posix" and consts["O_RDONLY"] == os.O_RDONLY
    assert "path" in result["modules"]
    assert "environ" not in consts  # not plain data: fetched by reference when used


def test_the_same_object_keeps_its_oid(client):
    assert client.module("os").oid == client.module("os").oid


def test_call_walks_the_path_in_one_round_trip(client):
    os_ = client.module("os")
    assert client.value(os_, "a", "b", path=["path", "join"]) == "a/b"
    assert client.value(os_, path=["getcwd"]) == os.getcwd()


def test_call_passes_keyword_arguments(client):
    builtins = client.module("builtins")
    assert client.value(builtins, [3, 1, 2], path=["sorted"], reverse=True) == [3, 2, 1]
    assert client.value(builtins, "ff", 16, path=["int"]) == 255


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64, -(10**50), 1.5, math.inf, -0.0, "", "grüße ✓",
    b"", b"\x00\xff" * 10, bytearray(b"xyz"), 1 + 2j, [], [1, "a", [None, 2.5]], (), (1, (2, (3,))),
    {}, {"a": 1, 2: [3], (1, 2): {"x": None}}, set(), {1, "two", (3,)}, frozenset({1, 2}),
], ids=repr)
def test_plain_values_round_trip_by_value(client, value):
    copy = client.module("copy")
    assert same(client.value(copy, value, path=["copy"]), value)


def test_nan_round_trips(client):
    assert math.isnan(client.value(client.module("copy"), math.nan, path=["copy"]))


def test_struct_sequences_cross_by_value_with_their_type(client):
    os_ = client.module("os")
    tag, type_name, fields, extras = client.value(os_, "/", path=["stat"])
    assert (tag, type_name) == ("$q", "os.stat_result")
    assert fields[0] == os.stat("/").st_mode and extras["st_mtime_ns"] == os.stat("/").st_mtime_ns


def test_plain_records_cross_by_value_with_their_fields(client):
    subprocess_ = client.module("subprocess")
    assert client.value(subprocess_, ["true"], path=["run"]) == ("$o", "subprocess.CompletedProcess",
                                                                 [["true"], 0, None, None])
    record = {"$o": "subprocess.CompletedProcess", "f": [["x"], 3, b"out", None]}
    reply = client.request("call", o=client.module("builtins").wire(), path=["repr"], a=[record])
    assert reply["ok"], reply.get("e")
    assert reply["r"] == "CompletedProcess(args=['x'], returncode=3, stdout=b'out')"


def test_an_unknown_record_type_is_a_bad_request(client):
    reply = client.request("call", o=client.module("builtins").wire(), path=["repr"],
                           a=[{"$o": "os.system", "f": []}])
    assert not reply["ok"] and reply["e"]["code"] == "bad_request"
    assert "os.system, which is not a plain record type" in reply["e"]["msg"]


def test_run_defines_the_function_from_source_and_calls_it(client, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("x")
    src = "\n\ndef listing(d, suffix=''):\n    return sorted(n + suffix + SEP for n in os.listdir(d))\n"
    reply = client.request("run", src=src, name="listing", mods={"$d": ["os", "os"]}, free={"$d": ["SEP", "|"]},
                           a=[str(tmp_path / "d")], k={"$d": ["suffix", "!"]})
    assert reply["ok"], reply.get("e")
    assert reply["r"] == ["a!|"]


def test_run_reports_errors_with_the_functions_own_lines(client):
    reply = client.request("run", src="\n\ndef f():\n    raise KeyError('k')\n", name="f")
    assert not reply["ok"] and reply["e"]["type"] == "builtins.KeyError"
    assert 'File "<box.run f>", line 4, in f' in reply["e"]["tb"]
    reply = client.request("run", src="x = 1\n", name="f")
    assert not reply["ok"] and reply["e"]["code"] == "bad_request"
    assert "does not define a function \"f\"" in reply["e"]["msg"]
    reply = client.request("run", src="def f(:\n", name="f")
    assert not reply["ok"] and reply["e"]["type"] == "builtins.SyntaxError"


def test_int_enums_cross_as_their_int_value(client):
    socket_ = client.module("socket")
    assert client.ok("getattr", o=socket_.wire(), name="AF_INET") == 2


def test_large_bytes_travel_as_raw_frames_both_ways(client):
    data = os.urandom(3 * (1 << 20) + 12345)
    frames = []
    boxed = box(data, frames)
    assert boxed["$F"][1] == 4
    reply = client.request("call", frames=frames, o=client.module("copy").wire(), path=["copy"], a=[boxed])
    assert reply["ok"], reply.get("e")
    # The worker's frames are 256 KiB (splitcore's bulk_frame_size), whatever the request's were.
    assert reply["r"]["$F"][0] == 0 and len(reply.frames) == 13
    assert all(len(f) <= 256 * 1024 for f in reply.frames)
    assert unbox(reply["r"], reply.frames) == data


def test_large_text_and_undecodable_file_names_cross_intact(client, tmp_path):
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    text = "grüße ✓ " * 100000
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    odd = os.fsdecode(b"caf\xe9.bin")
    (tmp_path / odd).write_bytes(b"")
    builtins = client.module("builtins")
    handle = client.value(builtins, str(tmp_path / "big.txt"), encoding="utf-8", path=["open"])
    reply = client.call(handle, path=["read"])
    assert "$u" in reply["r"] and len(reply.frames) >= 1
    assert unbox(reply["r"], reply.frames) == text
    assert set(client.value(client.module("os"), str(tmp_path), path=["listdir"])) == {"big.txt", odd}


def test_import_of_a_missing_module_is_module_not_found(client):
    error = client.request("import", name="no_such_module_here")["e"]
    assert error["type"] == "builtins.ModuleNotFoundError"
    assert error["msg"] == "No module named 'no_such_module_here'"


def test_values_too_large_for_a_header_travel_in_their_own_frame_both_ways(client, tmp_path):
    names = [f"file-{i:06}.txt" for i in range(60000)]
    spilled = cbor2.dumps(names)
    assert len(spilled) > 256 * 1024
    reply = client.request("call", frames=[spilled], o=client.module("copy").wire(), path=["copy"], a=[{"$H": 0}])
    assert reply["ok"], reply.get("e")
    assert reply["r"] == {"$H": 0}
    assert unbox(reply["r"], reply.frames) == names
    for name in names[:30000]:
        (tmp_path / name).touch()
    listing = client.call(client.module("os"), str(tmp_path), path=["listdir"])
    assert "$H" in listing["r"]
    assert len(unbox(listing["r"], listing.frames)) == 30001  # and the agent fixture's directory


def test_other_objects_cross_by_reference_and_can_be_passed_back(client):
    fractions = client.module("fractions")
    third = client.value(fractions, 1, 3, path=["Fraction"])
    assert isinstance(third, Ref) and third.type == "fractions.Fraction" and third.callable is False
    builtins = client.module("builtins")
    assert client.value(builtins, third, path=["str"]) == "1/3"
    assert client.ok("repr", o=third.wire()) == "Fraction(1, 3)"
    assert client.ok("str", o=third.wire()) == "1/3"
    assert client.ok("hash", o=third.wire()) == hash(__import__("fractions").Fraction(1, 3))
    assert client.ok("bool", o=third.wire()) is True
    assert client.ok("cmp", o=third.wire(), cmp="lt", v=1) is True
    assert client.ok("cmp", o=third.wire(), cmp="eq", v=2) is False
    assert "numerator" in client.ok("dir", o=third.wire())


def test_attributes_get_set_and_delete(client):
    types = client.module("types")
    namespace = client.value(types, path=["SimpleNamespace"], x=1)
    assert client.ok("getattr", o=namespace.wire(), name="x") == 1
    assert client.ok("setattr", o=namespace.wire(), name="y", v="two") is None
    assert client.ok("getattr", o=namespace.wire(), name="y") == "two"
    assert client.ok("delattr", o=namespace.wire(), name="y") is None
    reply = client.request("getattr", o=namespace.wire(), name="y")
    assert reply["e"]["type"] == "builtins.AttributeError"


def test_items_len_and_iteration(client):
    builtins = client.module("builtins")
    collections = client.module("collections")
    counter = client.value(collections, path=["OrderedDict"])
    assert isinstance(counter, Ref)
    assert client.ok("setitem", o=counter.wire(), k="a", v=1) is None
    assert client.ok("setitem", o=counter.wire(), k="b", v=[2]) is None
    assert client.ok("getitem", o=counter.wire(), k="b") == [2]
    assert client.ok("len", o=counter.wire()) == 2
    assert client.ok("delitem", o=counter.wire(), k="a") is None
    assert client.ok("len", o=counter.wire()) == 1
    assert client.request("getitem", o=counter.wire(), k="zz")["e"]["type"] == "builtins.KeyError"

    numbers = client.value(builtins, 10, path=["range"])
    first = client.ok("iter", o=numbers.wire(), n=4)
    assert first["items"] == [0, 1, 2, 3] and first["done"] is False
    rest = client.ok("next", o=first["it"], n=4)
    assert rest == {"items": [4, 5, 6, 7], "done": False}
    assert client.ok("next", o=first["it"], n=4) == {"items": [8, 9], "done": True}
    whole = client.ok("iter", o=numbers.wire(), n=100)
    assert whole == {"it": None, "items": list(range(10)), "done": True}


def test_context_managers_enter_and_exit(client, tmp_path):
    path = tmp_path / "f.txt"
    builtins = client.module("builtins")
    handle = client.value(builtins, str(path), "w", path=["open"])
    assert handle.type == "_io.TextIOWrapper"
    entered = client.ok("enter", o=handle.wire())
    assert entered["$r"] == handle.oid
    assert client.value(handle, "hello", path=["write"]) == 5
    assert client.ok("exit", o=handle.wire(), exc=None) is False
    assert path.read_text() == "hello"
    assert client.ok("getattr", o=handle.wire(), name="closed") is True


def test_exit_receives_the_exception_and_may_suppress_it(client):
    builtins = client.module("builtins")
    value_error = Ref(client.ok("getattr", o=builtins.wire(), name="ValueError"))
    contextlib = client.module("contextlib")
    reply = client.request("call", o=contextlib.wire(), path=["suppress"], a=[value_error.wire()])
    suppress = Ref(reply["r"])
    client.ok("enter", o=suppress.wire())
    assert client.ok("exit", o=suppress.wire(), exc=["builtins.ValueError", "boom"]) is True
    client.ok("enter", o=suppress.wire())
    assert client.ok("exit", o=suppress.wire(), exc=["builtins.KeyError", "k"]) is False


def test_release_drops_objects_and_stats_count_them(client):
    fractions = client.module("fractions")
    before = client.ok("stats")["objects"]
    a = client.value(fractions, 1, 3, path=["Fraction"])
    b = client.value(fractions, 1, 5, path=["Fraction"])
    assert client.ok("stats")["objects"] == before + 2
    assert client.ok("release", ids=[[b.oid, 1]]) is None
    assert client.ok("stats")["objects"] == before + 1
    assert client.request("repr", o=b.wire())["e"]["code"] == "bad_object"
    # Unknown ids are ignored: releases are batched and may cross a session's other messages.
    assert client.ok("release", ids=[[a.oid, 1], [999999, 3]]) is None
    assert client.ok("stats")["objects"] == before
    assert client.request("repr", o=a.wire())["e"]["code"] == "bad_object"


def test_reference_counts_follow_what_the_client_received(client):
    fractions = client.module("fractions")
    third = client.value(fractions, 1, 3, path=["Fraction"])
    identity = client.value(client.module("copy"), third, path=["copy"])  # Fraction.copy returns self
    assert identity.oid == third.oid
    client.ok("release", ids=[[third.oid, 1]])
    assert client.ok("repr", o=third.wire()) == "Fraction(1, 3)"  # one count left
    client.ok("release", ids=[[third.oid, 1]])
    assert client.request("repr", o=third.wire())["e"]["code"] == "bad_object"


def test_file_not_found_carries_errno_filename_and_traceback(client):
    builtins = client.module("builtins")
    error = client.call(builtins, "/no/such/dir/file.txt", path=["open"])["e"]
    assert error["type"] == "builtins.FileNotFoundError"
    assert error["errno"] == 2
    assert error["strerror"] == "No such file or directory"
    assert error["filename"] == "/no/such/dir/file.txt"
    assert "filename2" not in error  # a null field is left out
    assert error["args"] == [2, "No such file or directory"]
    assert error["msg"] == "[Errno 2] No such file or directory: '/no/such/dir/file.txt'"
    assert "FileNotFoundError" in error["tb"]
    assert "mro" not in error  # a fixed built-in exception: the client's class of that name has the same MRO


def test_python_exceptions_carry_a_remote_traceback(client):
    json_ = client.module("json")
    error = client.call(json_, "{bad", path=["loads"])["e"]
    assert error["type"] == "json.decoder.JSONDecodeError"
    assert 'File "/usr/lib/python3.11/json/decoder.py"' in error["tb"]
    assert "errno" not in error and "code" not in error
    assert error["mro"][:2] == [["json.decoder", "JSONDecodeError"], ["builtins", "ValueError"]]


def test_a_remote_system_exit_is_an_error_reply_not_the_end_of_the_worker(client):
    sys_ = client.module("sys")
    assert client.call(sys_, 3, path=["exit"])["e"]["type"] == "builtins.SystemExit"
    assert client.request("ping")["ok"]
    assert client.ok("stats")["objects"] >= 1


def test_bye_ends_the_session(agent):
    client = agent.client()
    pid = client.info["pid"]
    assert client.request("bye") == {"id": 2, "ok": True, "r": None}
    agent.wait_for_log(r"session \w+ closed by the client")
    from conftest import wait_until
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the worker to exit")
    assert client.request("stats")["e"]["code"] == "no_session"
    client.close()


def _serve_callbacks(client, request_id, answer):
    """Answers the callback requests of request_id with answer(header) -> answer fields, until its
    reply comes; returns (reply, callback requests, replies to the answers)."""
    callbacks, answered = [], []
    while True:
        message = client.receive(10)
        assert message is not None, f"no reply to request {request_id}"
        header, _ = message
        if header.get("ev") == "cb":
            callbacks.append(header)
            answer_id = next(client.ids)
            client.send({"id": answer_id, "op": "answer", "cb": header["cb"], **answer(header)})
            continue
        if "ev" in header:
            continue
        if header.get("id") == request_id:
            return header, callbacks, answered
        answered.append(header)


def test_a_local_reference_is_called_back_during_the_call_and_released_on_its_reply(client):
    builtins = client.module("builtins")
    request_id = next(client.ids)
    key = {"$l": 7, "t": "builtins.function", "cl": True, "p": []}
    client.send({"id": request_id, "op": "call", "o": builtins.wire(), "path": ["sorted"], "a": [[3, 1, 2]],
                 "k": {"$d": ["key", key]}})
    reply, callbacks, answered = _serve_callbacks(client, request_id, lambda h: {"ok": True, "r": -h["a"][0]})
    assert reply["ok"] and reply["r"] == [3, 2, 1]
    assert [(c["op"], c["for"], c["l"], c["a"]) for c in callbacks] == [
        ("call", request_id, {"$l": 7}, [3]), ("call", request_id, {"$l": 7}, [1]), ("call", request_id, {"$l": 7}, [2])]
    assert [a["ok"] for a in answered] == [True] * 3  # every answer gets a reply
    assert reply["rl"] == [[7, 1]]  # the proxy died with the call: released on its reply


def test_an_error_answer_raises_in_the_call_with_its_class_args_and_origin(client):
    builtins = client.module("builtins")
    request_id = next(client.ids)
    key = {"$l": 3, "t": "builtins.function", "cl": True, "p": []}
    client.send({"id": request_id, "op": "call", "o": builtins.wire(), "path": ["sorted"], "a": [[1, 2]],
                 "k": {"$d": ["key", key]}})
    error = {"type": "mine.Oops", "msg": "oops", "args": ["oops", 2], "mro": [["mine", "Oops"],
             ["builtins", "LookupError"], ["builtins", "Exception"]], "origin": 41}
    reply, callbacks, _ = _serve_callbacks(client, request_id, lambda h: {"ok": False, "e": error})
    assert len(callbacks) == 1
    assert reply["ok"] is False
    assert reply["e"]["type"] == "builtins.LookupError"  # the nearest class the slave has
    assert reply["e"]["args"] == ["oops", 2]
    assert reply["e"]["origin"] == 41


def test_an_answer_no_callback_waits_for_is_a_bad_request(client):
    reply = client.request("answer", cb=999, ok=True, r=None)
    assert reply["ok"] is False
    assert reply["e"]["code"] == "bad_request"
    assert reply["e"]["msg"] == ("[splitbrain.bad_request] no callback 999 waits for this answer (it was "
                                 "interrupted, or has been answered)")


def test_a_local_reference_used_after_its_call_is_callback_unavailable(client):
    kept = client.value(client.module("collections"), path=["deque"])
    client.ok("call", o=kept.wire(), path=["append"], a=[{"$l": 5, "t": "builtins.function", "cl": True, "p": []}])
    request_id = next(client.ids)
    client.send({"id": request_id, "op": "call", "o": client.module("threading").wire(), "path": ["Thread"],
                 "k": {"$d": ["target", {"$l": 5, "t": "builtins.function", "cl": True, "p": []}]}})
    # Thread() reads the target's __name__: a callback during the call, answered
    reply, callbacks, _ = _serve_callbacks(client, request_id, lambda h: {"ok": True, "r": "work"})
    assert [(c["op"], c["name"]) for c in callbacks] == [("getattr", "__name__")]
    thread = Ref(reply["r"])
    # Held by the list: the thread on the slave calls it outside any call of the main thread.
    client.ok("call", o=thread.wire(), path=["start"])
    client.ok("call", o=thread.wire(), path=["join"], a=[10])
    deadline = time.monotonic() + 10
    while not any(b"callback_unavailable" in e.get("d", b"") for e in client.events):
        assert time.monotonic() < deadline, client.events
        client.ok("stats")


def test_a_request_after_a_failed_pipelined_one_is_not_run_but_a_close_after_it_is(client, tmp_path):
    """docs/protocol.md, "Pipelined writes": "after" names a pipelined request ("pipe": true); the
    worker SHALL NOT run a request after one that failed, and counts it failed in turn."""
    path = tmp_path / "p.txt"
    builtins = client.module("builtins")
    handle = client.value(builtins, str(path), "w", path=["open"])
    ids = []
    for data, after in (("one", None), (42, None), ("three", "previous")):
        request_id = next(client.ids)
        fields = {"o": handle.wire(), "path": ["write"], "a": [data], "pipe": True}
        if after:
            fields["after"] = ids[-1]
        client.send({"id": request_id, "op": "call", **fields})
        ids.append(request_id)
    first, failed, skipped = (client.wait_reply(i) for i in ids)
    assert first["ok"] and first["r"] == 3
    assert not failed["ok"] and failed["e"]["type"] == "builtins.TypeError"
    assert not skipped["ok"]
    assert skipped["e"]["msg"] == (f"[splitbrain.not_run_after_failure] request {ids[1]}, a pipelined write "
                                   f"before it on the same file, failed")
    # the next call on the file names the skipped one: not run either
    reply = client.request("call", o=handle.wire(), path=["tell"], after=ids[2])
    assert reply["e"]["code"] == "not_run_after_failure"
    # a request after a pipelined one that succeeded runs; a close is sent without "after"
    assert client.ok("call", o=handle.wire(), path=["write"], a=["!"], after=ids[0]) == 1
    assert client.ok("call", o=handle.wire(), path=["close"]) is None
    assert path.read_text() == "one!"


def test_a_named_object_is_the_workers_own_and_an_unknown_name_is_not_transferable(client):
    builtins_ = client.module("builtins").wire()
    # SHALL: {"$n": [module, qualname]} is the worker's own object of that name
    assert client.ok("call", o=builtins_, path=["isinstance"], a=[0, {"$n": ["builtins", "int"]}]) is True
    assert client.ok("call", o=builtins_, path=["repr"], a=[{"$n": ["builtins", "str.lower"]}]) == \
        "<method 'lower' of 'str' objects>"
    reply = client.request("call", o=builtins_, path=["repr"], a=[{"$n": ["builtins", "NoSuchClass"]}])
    assert not reply["ok"] and reply["e"]["code"] == "not_transferable"
    assert "the master's builtins.NoSuchClass crosses by name, and this slave's Python has none" in reply["e"]["msg"]
    reply = client.request("call", o=builtins_, path=["repr"], a=[{"$n": ["no_such_module_here", "X"]}])
    assert not reply["ok"] and reply["e"]["code"] == "not_transferable"
    assert "this slave's Python has no module no_such_module_here" in reply["e"]["msg"]
    reply = client.request("call", o=builtins_, path=["repr"], a=[{"$n": ["os", "sep"]}])  # not its own name
    assert not reply["ok"] and reply["e"]["code"] == "not_transferable"
    reply = client.request("call", o=builtins_, path=["repr"], a=[{"$n": "builtins.int"}])
    assert not reply["ok"] and reply["e"]["code"] == "bad_request"
