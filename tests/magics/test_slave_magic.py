"""%%slave, %slave, %%local and %slaves as a notebook user calls them (issue 5)."""
import json
import os
import re
import socket
import time

import pytest
from conftest import fan_out_areas, fan_out_blocks, fan_out_text, result, running_below, stdout, wait_until


def test_a_slave_cell_runs_remotely_and_its_variables_land_in_the_notebook(kernel):
    out = kernel.ok("%%slave box-a\nremote_pid = os.getpid()\nprint('remote', remote_pid)")
    assert f"remote " in stdout(out)
    out = kernel.ok("print(remote_pid != local_pid, os.getpid() == local_pid)")
    assert stdout(out) == "True True\n"


def test_the_last_expression_of_a_slave_cell_is_its_result(kernel):
    out = kernel.ok("%%slave box-a\nos.getpid() == local_pid")
    assert result(out) == "False"


def test_from_import_inside_a_slave_cell_binds_the_slaves_class(kernel):
    kernel.ok("from subprocess import Popen as LocalPopen")
    kernel.ok('%%slave box-a\nfrom subprocess import Popen\np = Popen(["true"])\np.wait()')
    out = kernel.ok("print(Popen is not LocalPopen, repr(p).startswith('<remote box-a:'))")
    assert stdout(out) == "True True\n"


def test_leaving_a_slave_cell_restores_the_context_even_after_an_error(kernel):
    reply, _ = kernel.execute("%%slave box-a\nraise ValueError('boom')")
    assert reply["status"] == "error" and reply["ename"] == "ValueError"
    out = kernel.ok("import splitbrain\nprint(splitbrain.current(), os.getpid() == local_pid)")
    assert stdout(out) == "None True\n"


def test_remote_output_is_live_and_arrives_before_the_reply(kernel):
    code = ('%%slave box-a\nsubprocess.run(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.4; done"])\n'
            'print("after")')
    out = kernel.ok(code)
    lines = [(t, c["text"]) for t, kind, c in out if kind == "stream"]
    text = "".join(x for _, x in lines)
    assert text == "1\n2\n3\nafter\n", text
    first = next(t for t, x in lines if "1" in x)
    third = next(t for t, x in lines if "3" in x)
    # SHALL appear as produced: the lines were printed 0.8 s apart and must not arrive together
    assert third - first > 0.5


def test_remote_errors_render_as_tracebacks_marked_with_the_slave(kernel):
    reply, _ = kernel.execute('%%slave box-a\nopen("/no/such/file")')
    assert reply["ename"] == "FileNotFoundError"
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(reply["traceback"]))
    assert "/no/such/file" in tb
    # SHALL show the local frames, then the remote part marked with the slave's name (open() has
    # no Python frames on the slave: the mark is all of the remote part, issue 12)
    local_frame = tb.find("Cell In[")
    remote_part = tb.find("(raised on box-a)")
    assert local_frame >= 0, tb
    assert remote_part > local_frame, tb


def test_sticky_slave_applies_to_following_cells_until_slave_local(kernel):
    kernel.ok("%slave box-a")
    try:
        assert result(kernel.ok("os.getpid() == remote_pid")) == "True"
        assert result(kernel.ok("%%local\nos.getpid() == local_pid")) == "True"
        assert result(kernel.ok("os.getpid() == remote_pid")) == "True"
    finally:
        kernel.ok("%slave local")
    assert result(kernel.ok("os.getpid() == local_pid")) == "True"


def test_slave_name_and_slave_local_each_say_in_one_line_what_now_runs_where(kernel):
    address = result(kernel.ok("splitbrain.slave('box-a').address")).strip("'")
    try:
        # SHALL (issue 12): `%slave NAME` prints one line: what now runs where, and how to return.
        assert stdout(kernel.ok("%slave box-a")) == (
            f"cells now run with box-a active ({address}); `%slave local` returns to this machine\n")
    finally:
        back = stdout(kernel.ok("%slave local"))
    assert back == "cells now run on this machine; `%slave box-a` makes box-a active again\n"
    assert stdout(kernel.ok("%slave local")) == "cells run on this machine (no slave was active)\n"


def test_an_unknown_slave_is_a_usage_error_naming_the_known_ones(kernel):
    reply, _ = kernel.execute("%%slave nosuchbox\n1")
    assert reply["ename"] == "UsageError"
    assert "[splitbrain.unknown_slave]" in reply["evalue"]
    assert "box-a" in reply["evalue"] and "box-b" in reply["evalue"]


def test_a_bad_option_is_a_usage_error(kernel):
    reply, _ = kernel.execute("%%slave --bogus box-a\n1")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"


def test_fan_out_runs_in_parallel_labels_output_and_collects_results(kernel):
    start = time.monotonic()
    out = kernel.ok("%%slave box-a box-b -o pids\nprint('hello from', os.getpid())\n"
                    "subprocess.run(['sleep', '0.6'])\nos.getpid()")
    elapsed = time.monotonic() - start
    blocks = fan_out_blocks(fan_out_text(out))
    assert sorted(blocks) == ["box-a", "box-b"]
    out = kernel.ok("print(sorted(pids), len(set(pids.values())), local_pid in pids.values())")
    assert stdout(out) == "['box-a', 'box-b'] 2 False\n"
    pids = {name: int(result(kernel.ok(f"pids[{name!r}]"))) for name in ("box-a", "box-b")}
    # each block holds its own slave's output, and only that
    assert f"hello from {pids['box-a']}\n" in blocks["box-a"] and str(pids["box-b"]) not in blocks["box-a"]
    assert f"hello from {pids['box-b']}\n" in blocks["box-b"] and str(pids["box-a"]) not in blocks["box-b"]
    assert elapsed < 1.15, f"two remote 0.6 s commands took {elapsed:.2f} s: not parallel"


def test_fan_out_shows_each_slaves_output_live_in_its_own_area(kernel):
    # SHALL (issue 12): each slave's output appears as it is produced, kept together per slave
    # (one area per slave, updated by display id), with a state line; nobody waits for the slowest.
    a_pid = _worker(kernel, "box-a")
    code = ("%%slave box-a box-b\nprint('start', os.getpid(), flush=True)\n"
            f"if os.getpid() != {a_pid}: subprocess.run(['sh', '-c', 'sleep 0.6; echo slow 1; sleep 0.6'])\n")
    start = time.monotonic()
    out = kernel.ok(code)
    ended = time.monotonic()
    updates = [(t, c["transient"]["display_id"], c["data"]["text/plain"]) for t, kind, c in out
               if kind in ("display_data", "update_display_data")]
    areas = fan_out_areas(out)
    assert len(areas) == 2
    a_id, b_id = list(areas)
    assert areas[a_id].startswith("[box-a] done in ") and f"start {a_pid}" in areas[a_id]
    assert areas[b_id].startswith("[box-b] done in ") and areas[b_id].endswith("slow 1\n")
    first_shown = min(t for t, _, text in updates)
    a_done = min(t for t, i, text in updates if i == a_id and "done in" in text)
    b_slow = min(t for t, i, text in updates if i == b_id and "slow 1" in text)
    b_done = min(t for t, i, text in updates if i == b_id and "done in" in text)
    assert first_shown - start < 0.5, "the areas did not show at once"
    assert b_done - a_done > 0.8, "box-a's result waited for box-b"
    assert b_slow < b_done - 0.3, "box-b's output waited for its end"
    assert any(i == b_id and text.startswith("[box-b] running") for _, i, text in updates)
    assert ended >= b_done
    assert stdout(out) == ""


def test_one_failing_slave_does_not_hide_the_others(kernel):
    reply, out = kernel.execute("%%slave box-a box-b\nif os.getpid() == remote_pid: raise KeyError('only a')\n'fine'")
    assert reply["status"] == "error"
    assert "[splitbrain.fan_out_failed] 1 of 2 slaves failed: box-a" in reply["evalue"]
    text = fan_out_text(out)
    assert "[box-b] done in " in text and "-> 'fine'" in text
    assert "[box-a] failed (KeyError) in " in text and "KeyError: 'only a'" in text


def test_slaves_lists_the_slaves_as_html_and_text(kernel):
    out = kernel.ok("%slaves")
    html = result(out, "text/html")
    text = result(out)
    for name in ("box-a", "box-b"):
        assert name in html and name in text
    assert "<table" in html and "latency" in text and "connected" in text


def test_slave_lease_takes_a_lease_slaves_shows_it_and_unlease_ends_it(kernel):
    """issue 13: %slave lease NAME [RESOURCE ...] [--for] [--shared], its row in %slaves, %slave unlease."""
    out = kernel.ok("%slave lease box-a ASRL/dev/ttyUSB0::INSTR --for 2h")
    assert re.fullmatch(r"leased ASRL/dev/ttyUSB0::INSTR on box-a, until \d\d:\d\d; `%slave unlease box-a` ends "
                        r"it\n", stdout(out)), stdout(out)
    text = result(kernel.ok("%slaves"))
    assert re.search(r"ASRL/dev/ttyUSB0::INSTR: \S.* \(you\) until \d\d:\d\d", text), text
    assert stdout(kernel.ok("%slave unlease box-a")) == "released 1 lease on box-a\n"
    assert "ASRL/dev/ttyUSB0" not in result(kernel.ok("%slaves"))
    reply, _ = kernel.execute("%slave lease box-a --for soon")
    assert reply["status"] == "error" and "not a duration: 'soon'" in reply["evalue"], reply


def test_slave_help_shows_examples(kernel):
    msg_id = kernel.kc.execute("%slave?")
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    pages = [p for p in reply["content"].get("payload", []) if p.get("source") == "page"]
    assert pages and "%%slave bench-a" in pages[0]["data"]["text/plain"]
    # issue 12: the address form a user can paste, with the key it needs
    assert "tcp://HOST:PORT?key=AGENT_PUB" in pages[0]["data"]["text/plain"]


def _interrupt_when_running(kernel, code, workers, argv):
    """Run *code*, wait until each worker runs *argv*, interrupt: (reply, seconds to the reply)."""
    msg_id = kernel.kc.execute(code)
    children = [wait_until(lambda w=w: running_below(w, argv), 20, f"{argv} under worker {w}")
                for w in workers]
    sent = time.monotonic()
    kernel.km.interrupt_kernel()
    reply = kernel.kc.get_shell_msg(timeout=10)
    took = time.monotonic() - sent
    assert reply["parent_header"]["msg_id"] == msg_id
    for pids in children:
        for pid in pids:  # SHALL interrupt it on the slave: the child is killed and reaped there
            wait_until(lambda p=pid: not os.path.exists(f"/proc/{p}") or
                     open(f"/proc/{p}/stat").read().rpartition(")")[2].split()[0] == "Z",
                     5, f"the remote {argv} ({pid}) ended")
    return reply["content"], took


def _worker(kernel, name):
    return int(result(kernel.ok(f"%%slave {name}\nos.getpid()")))


def test_interrupting_a_remote_command_kills_it_on_the_slave_and_keeps_the_session(kernel):
    worker = _worker(kernel, "box-a")
    reply, took = _interrupt_when_running(
        kernel, '%%slave box-a\nsubprocess.run(["sleep", "60"])', [worker], ["sleep", "60"])
    assert reply["ename"] == "KeyboardInterrupt"
    assert took < 1.0, f"KeyboardInterrupt after {took:.2f} s"
    assert stdout(kernel.ok("print(splitbrain.current())")) == "None\n"
    assert int(result(kernel.ok("%%slave box-a\nos.getpid()"))) == worker


def test_interrupting_a_fan_out_cancels_every_slave_within_a_second(kernel):
    workers = [_worker(kernel, "box-a"), _worker(kernel, "box-b")]
    reply, took = _interrupt_when_running(
        kernel, '%%slave box-a box-b\nsubprocess.run(["sleep", "60"])', workers, ["sleep", "60"])
    assert reply["ename"] == "KeyboardInterrupt"
    assert took < 1.0, f"KeyboardInterrupt after {took:.2f} s"
    assert stdout(kernel.ok("print(splitbrain.current())")) == "None\n"
    assert [_worker(kernel, "box-a"), _worker(kernel, "box-b")] == workers


def _complete(kernel, code):
    msg_id = kernel.kc.complete(code, len(code))
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    return reply["content"]["matches"]


def test_completion_in_a_slave_cell_answers_for_the_slave(kernel):
    # an attribute that only the slave's os module has tells whose names completion saw
    kernel.ok("%%slave box-a\nos.slave_only_marker = 1")
    assert "os.slave_only_marker" in _complete(kernel, "%%slave box-a\nos.slave_only_mar")
    assert "os.slave_only_marker" not in _complete(kernel, "os.slave_only_mar")
    assert "os.getcwd" in _complete(kernel, "%%slave box-a\nos.getcw")


def test_magic_names_and_slave_names_complete(kernel):
    assert "%%slave" in _complete(kernel, "%%sla")
    names = _complete(kernel, "%%slave box")
    assert "box-a" in names and "box-b" in names
    assert "box-b" in _complete(kernel, "%slave box-")


def _inspect(kernel, code):
    msg_id = kernel.kc.inspect(code, len(code))
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    return reply["content"]


def test_inspection_in_a_slave_cell_shows_the_remote_docstring(kernel):
    # a function that only box-a's os module has, with a docstring only it carries
    probe = ("import os\ndef slave_only_probe():\n    'Only box-a documents this probe.'\n"
             "os.slave_only_probe = slave_only_probe")
    kernel.ok(f"%%slave box-a\nsplitbrain.current().modules.builtins.exec({probe!r}, {{}})")
    content = _inspect(kernel, "%%slave box-a\nos.slave_only_probe")
    assert content["found"], content
    assert "Only box-a documents this probe." in content["data"]["text/plain"]
    local = _inspect(kernel, "os.slave_only_probe")
    assert "Only box-a documents this probe." not in json.dumps(local)


def test_completion_reads_the_slave_line_with_the_magics_own_parser(kernel):
    kernel.ok("%%slave box-a\nos.slave_only_marker = 1")
    assert "os.slave_only_marker" in _complete(kernel, "%%slave -o res box-a\nos.slave_only_mar")
    assert "os.slave_only_marker" in _complete(kernel, "%%slave --out=res box-a box-b\nos.slave_only_mar")


def test_completion_in_a_slave_cell_leaves_jedi_as_it_was_for_local_cells(kernel):
    before = stdout(kernel.ok("print(get_ipython().Completer.use_jedi)"))
    _complete(kernel, "%%slave box-a\nos.getcw")
    assert stdout(kernel.ok("print(get_ipython().Completer.use_jedi)")) == before == "True\n"


# --- registry management, help

def test_forgetting_an_unknown_slave_is_a_usage_error_naming_the_known_ones(kernel):
    reply, _ = kernel.execute("%slave forget nosuchbox")
    assert reply["ename"] == "UsageError"
    assert "[splitbrain.unknown_slave]" in reply["evalue"] and "'nosuchbox'" in reply["evalue"]
    assert "box-a" in reply["evalue"] and "box-b" in reply["evalue"]


def test_connect_registers_a_slave_cells_can_use_and_forget_removes_it(kernel):
    kernel.ok("box_a = splitbrain.slave('box-a')\ntarget = f'{box_a.address}?key={box_a.public_key}'")
    out = kernel.ok("%slave connect box-c $target")
    assert "connected box-c at tcp://127.0.0.1:" in stdout(out)
    rows = "[(r['name'], r['state']) for r in splitbrain.slaves(ping=False) if r['name'] == 'box-c']"
    assert result(kernel.ok(rows)) == "[('box-c', 'connected')]"
    pid = int(result(kernel.ok("%%slave box-c\nos.getpid()")))
    assert pid != int(result(kernel.ok("local_pid")))
    kernel.ok("%slave forget box-c")
    assert result(kernel.ok(rows)) == "[]"
    reply, _ = kernel.execute("%%slave box-c\n1")
    assert reply["ename"] == "UsageError" and "[splitbrain.unknown_slave]" in reply["evalue"]


def test_forgetting_the_sticky_slave_returns_to_local(kernel):
    kernel.ok("%slave connect box-d $target")
    kernel.ok("%slave box-d")
    try:
        assert result(kernel.ok("os.getpid() == local_pid")) == "False"
        out = kernel.ok("%slave forget box-d")
        assert "cells run locally again" in stdout(out)
        assert stdout(kernel.ok("print(splitbrain.current(), os.getpid() == local_pid)")) == "None True\n"
    finally:
        kernel.ok("%slave local")


def test_cell_magic_help_shows_examples(kernel):
    msg_id = kernel.kc.execute("%%slave?")
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    pages = [p for p in reply["content"].get("payload", []) if p.get("source") == "page"]
    assert pages, reply["content"]
    text = pages[0]["data"]["text/plain"]
    assert "%%slave bench-a bench-b -o hosts" in text and "%slave forget NAME" in text


# --- partial failures of a fan-out

def test_o_keeps_the_values_of_the_slaves_that_succeeded_when_one_fails(kernel):
    a_pid, b_pid = _worker(kernel, "box-a"), _worker(kernel, "box-b")
    kernel.ok("partial = 'unset'")
    reply, _ = kernel.execute(f"%%slave box-a box-b -o partial\nif os.getpid() == {a_pid}: raise KeyError('a')\n"
                              "os.getpid()")
    assert "[splitbrain.fan_out_failed] 1 of 2 slaves failed: box-a" in reply["evalue"]
    assert result(kernel.ok("partial")) == f"{{'box-b': {b_pid}}}"


@pytest.fixture(scope="module")
def dead_box(kernel):
    """A registry entry for an agent that does not answer: a loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = stdout(kernel.ok("print(splitbrain.config_dir())")).strip()
    key = result(kernel.ok("splitbrain.slave('box-a').public_key")).strip("'")
    path = os.path.join(config, "slaves.json")
    registry = json.load(open(path)) if os.path.exists(path) else {"slaves": {}}
    registry["slaves"]["dead-box"] = {"address": f"tcp://127.0.0.1:{port}", "public_key": key}
    with open(path, "w") as f:
        json.dump(registry, f)
    yield "dead-box"
    registry = json.load(open(path))
    del registry["slaves"]["dead-box"]
    with open(path, "w") as f:
        json.dump(registry, f)


def test_an_unreachable_slave_fails_only_its_own_part_of_a_fan_out(kernel, dead_box):
    a_pid = _worker(kernel, "box-a")
    start = time.monotonic()
    reply, out = kernel.execute(f"%%slave box-a {dead_box} -o reached\nprint('ran on', os.getpid())\nos.getpid()",
                                timeout=30)
    elapsed = time.monotonic() - start
    assert reply["status"] == "error"
    assert f"[splitbrain.fan_out_failed] 1 of 2 slaves failed: {dead_box}" in reply["evalue"]
    text = fan_out_text(out)
    blocks = fan_out_blocks(text)
    assert f"ran on {a_pid}" in blocks["box-a"]
    # SHALL (issue 12): a failed slave's state line names its error id; (issue 10) a port that
    # refuses connections is said to be one, at once.
    assert f"[{dead_box}] failed (nothing_listening) in " in text
    assert "NothingListening: " in blocks[dead_box], blocks[dead_box]
    assert result(kernel.ok("reached")) == f"{{'box-a': {a_pid}}}"
    assert elapsed < 15, f"the unreachable agent held the cell {elapsed:.1f} s"


def test_completion_never_connects_to_a_slave_that_is_not_connected(kernel, dead_box):
    start = time.monotonic()
    matches = _complete(kernel, f"%%slave {dead_box}\nos.getcw")
    took = time.monotonic() - start
    assert took < 1.0, f"completion took {took:.2f} s"
    assert any(m.endswith("getcwd") for m in matches), matches  # the local completion
    rows = f"[r['state'] for r in splitbrain.slaves(ping=False) if r['name'] == {dead_box!r}]"
    assert result(kernel.ok(rows)) == "['not connected']"


# --- context and live output

def test_leaving_a_failing_slave_cell_restores_a_sticky_slave_and_renders_the_error(kernel):
    kernel.ok("%slave box-b")
    try:
        reply, _ = kernel.execute("%%slave box-a\nraise ValueError('boom')")
        assert reply["status"] == "error", reply
        assert reply["ename"] == "ValueError" and "boom" in reply["traceback"][-1]
        assert result(kernel.ok("splitbrain.current().name")) == "'box-b'"
    finally:
        kernel.ok("%slave local")


def test_a_remote_function_that_prints_shows_each_line_as_it_is_printed(kernel):
    printer = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.4)"
    code = f"%%slave box-a\nsplitbrain.current().modules.builtins.exec({printer!r}, {{}})"
    arrivals = []

    def on_iopub(msg):
        if msg["msg_type"] == "stream":
            arrivals.append((time.monotonic(), msg["content"]["text"]))

    reply = kernel.kc.execute_interactive(code, timeout=30, output_hook=on_iopub)
    replied = time.monotonic()
    assert reply["content"]["status"] == "ok"
    assert "".join(text for _, text in arrivals) == "line 0\nline 1\nline 2\n"
    so_far, times = "", []
    for t, text in arrivals:
        so_far += text
        while len(times) < 3 and f"line {len(times)}\n" in so_far:
            times.append(t)
    # SHALL appear as produced: printed 0.4 s apart on box-a, so not arriving together ...
    assert times[1] - times[0] >= 0.3 and times[2] - times[1] >= 0.3, times
    # ... and all of it before the reply (execute_interactive returns once the reply has come)
    assert all(t <= replied for t in times)


# --- progress on long calls (issue 12)

def test_a_remote_call_running_2_s_shows_a_quiet_line_updated_in_place_and_removed_at_its_end(kernel):
    start = time.monotonic()
    out = kernel.ok("%%slave box-a\nsubprocess.run(['sleep', '3.5'])")
    shown = [(t - start, kind, c["transient"]["display_id"], c["data"].get("text/plain"))
             for t, kind, c in out if kind in ("display_data", "update_display_data")]
    assert shown, out
    first_at, kind, display_id, text = shown[0]
    # SHALL: a quiet line once the call has run for 2 s, naming the slave and the call ...
    assert kind == "display_data" and 1.9 <= first_at < 3.0, shown
    assert re.fullmatch(r"waiting on box-a: subprocess\.run\(…\) [23]\.\d s", text), text
    # ... updated in place (the same display id) as the time goes on ...
    assert all(i == display_id for _, _, i, _ in shown)
    assert len({t for *_, t in shown[:-1]}) >= 2, shown
    # ... and removed when the call ends.
    assert shown[-1][1] == "update_display_data" and shown[-1][3] == ""


def test_many_short_remote_calls_show_no_progress_line(kernel):
    out = kernel.ok("%%slave box-a\nt = time.monotonic()\nwhile time.monotonic() - t < 2.5: os.getpid()")
    assert [kind for _, kind, _ in out if kind in ("display_data", "update_display_data")] == []
