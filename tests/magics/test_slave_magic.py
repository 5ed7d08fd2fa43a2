"""%%slave, %slave, %%local and %slaves as a notebook user calls them (issue 5)."""
import time

from conftest import result, stdout


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
    tb = "\n".join(reply["traceback"])
    assert "box-a" in tb and "/no/such/file" in tb


def test_sticky_slave_applies_to_following_cells_until_slave_local(kernel):
    kernel.ok("%slave box-a")
    try:
        assert result(kernel.ok("os.getpid() == remote_pid")) == "True"
        assert result(kernel.ok("%%local\nos.getpid() == local_pid")) == "True"
        assert result(kernel.ok("os.getpid() == remote_pid")) == "True"
    finally:
        kernel.ok("%slave local")
    assert result(kernel.ok("os.getpid() == local_pid")) == "True"


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
    out = kernel.ok("%%slave box-a box-b -o pids\nprint('hello from', os.getpid())\ntime.sleep(0.6)\nos.getpid()")
    elapsed = time.monotonic() - start
    text = stdout(out)
    assert "[box-a] done" in text and "[box-b] done" in text
    a_block = text[text.index("[box-a] done"):]
    assert "hello from" in a_block
    out = kernel.ok("print(sorted(pids), len(set(pids.values())), local_pid in pids.values())")
    assert stdout(out) == "['box-a', 'box-b'] 2 False\n"
    assert elapsed < 1.15, f"two 0.6 s cells took {elapsed:.2f} s: not parallel"


def test_one_failing_slave_does_not_hide_the_others(kernel):
    reply, out = kernel.execute("%%slave box-a box-b\nif os.getpid() == remote_pid: raise KeyError('only a')\n'fine'")
    assert reply["status"] == "error"
    assert "[splitbrain.fan_out_failed] 1 of 2 slaves failed: box-a" in reply["evalue"]
    text = stdout(out)
    assert "[box-b] done" in text and "'fine'" in text
    assert "[box-a] failed" in text


def test_slaves_lists_the_slaves_as_html_and_text(kernel):
    out = kernel.ok("%slaves")
    html = result(out, "text/html")
    text = result(out)
    for name in ("box-a", "box-b"):
        assert name in html and name in text
    assert "<table" in html and "latency" in text and "connected" in text


def test_slave_help_shows_examples(kernel):
    msg_id = kernel.kc.execute("%slave?")
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    pages = [p for p in reply["content"].get("payload", []) if p.get("source") == "page"]
    assert pages and "%%slave bench-a" in pages[0]["data"]["text/plain"]


def test_interrupting_a_remote_call_cancels_it_and_keeps_the_session(kernel):
    msg_id = kernel.kc.execute("%%slave box-a\nimport time\ntime.sleep(60)")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until the cell is running
        msg = kernel.kc.get_iopub_msg(timeout=20)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            break
    time.sleep(0.5)  # the remote sleep has started
    sent = time.monotonic()
    kernel.km.interrupt_kernel()
    reply = kernel.kc.get_shell_msg(timeout=10)
    took = time.monotonic() - sent
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert took < 1.0, f"KeyboardInterrupt after {took:.2f} s"
    assert result(kernel.ok("%%slave box-a\nos.getpid() == remote_pid")) == "True"


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


def test_inspection_in_a_slave_cell_shows_the_remote_docstring(kernel):
    code = "%%slave box-a\nos.getcwd"
    msg_id = kernel.kc.inspect(code, len(code))
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    content = reply["content"]
    assert content["found"], content
    assert "current working directory" in content["data"]["text/plain"]
