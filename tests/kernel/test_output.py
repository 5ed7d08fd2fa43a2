"""Output reaches the client complete, in order and coalesced, from the cell and from other
threads (issue 2, point 5)."""

from conftest import printed


def is_stream_of(msg, msg_id):
    return msg["msg_type"] == "stream" and msg["parent_header"].get("msg_id") == msg_id


def streams(outputs):
    return [c for t, c in outputs if t == "stream"]


def test_2000_prints_arrive_complete_in_order_and_coalesced(kernel):
    reply, outputs = kernel.execute("for i in range(2000): print(i)")
    assert reply["status"] == "ok"
    messages = streams(outputs)
    assert "".join(m["text"] for m in messages) == "".join(f"{i}\n" for i in range(2000))
    assert {m["name"] for m in messages} == {"stdout"}
    # 4000 writes (text and newline); xeus-python sends one message per write.
    assert len(messages) < 100


def test_stdout_and_stderr_keep_their_interleaving(kernel):
    code = ("import sys\n"
            "print('out 1'); print('out 2')\n"
            "print('err 1', file=sys.stderr)\n"
            "print('out 3')\n")
    _, outputs = kernel.execute(code)
    assert printed(outputs) == [("stdout", "out 1\nout 2\n"), ("stderr", "err 1\n"), ("stdout", "out 3\n")]


def test_text_printed_before_a_display_or_result_comes_before_it(kernel):
    code = ("from IPython.display import display, HTML\n"
            "print('first')\n"
            "display(HTML('<b>second</b>'))\n"
            "print('third')\n"
            "'fourth'")
    _, outputs = kernel.execute(code)
    kinds = [(t, c.get("text") or c.get("data", {}).get("text/plain")) for t, c in outputs]
    assert kinds == [("stream", "first\n"), ("display_data", "<IPython.core.display.HTML object>"),
                     ("stream", "third\n"), ("execute_result", "'fourth'")]


def wait_for_file_source(path):
    """Python source of wait_for_file(): waits, with a deadline, until the test creates `path`."""
    return ("import os as _os, time as _time\n"
            "def wait_for_file():\n"
            "    deadline = _time.monotonic() + 30\n"
            f"    while not _os.path.exists({str(path)!r}):\n"
            "        assert _time.monotonic() < deadline, 'the test never created the file'\n"
            "        _time.sleep(0.01)\n")


def test_output_of_a_thread_arrives_after_the_cell_finished(kernel, tmp_path):
    go = tmp_path / "cell-finished"
    reply, _ = kernel.execute(
        wait_for_file_source(go) +
        "import threading\n"
        "def later():\n"
        "    wait_for_file()\n"
        "    print('from a thread')\n"
        "threading.Thread(target=later).start()\n")
    assert reply["status"] == "ok"
    go.write_text("")
    seen = kernel.iopub_until(lambda m: m["msg_type"] == "stream"
                              and m["content"]["text"] == "from a thread\n", timeout=10)
    assert seen[-1]["content"]["name"] == "stdout"


def test_many_threads_printing_lose_nothing(kernel):
    _, outputs = kernel.execute(
        "import threading\n"
        "def work(n):\n"
        "    for i in range(200): print(f'{n}:{i}')\n"
        "threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "None")
    lines = "".join(m["text"] for m in streams(outputs)).splitlines()
    assert sorted(lines) == sorted(f"{n}:{i}" for n in range(8) for i in range(200))
    for n in range(8):
        assert [line for line in lines if line.startswith(f"{n}:")] == [f"{n}:{i}" for i in range(200)]


def test_text_without_newline_is_sent_while_the_cell_still_runs(kernel, tmp_path):
    go = tmp_path / "text-seen"
    # The cell goes on only once the test has seen its text: flushed only at the end, it never would.
    msg_id = kernel.kc.execute(wait_for_file_source(go) + "print('working...', end=''); wait_for_file(); print(' done')")
    seen = kernel.wait_for_stream(msg_id, "working...")
    go.write_text("")
    seen += kernel.iopub_until(lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                               and m["content"]["execution_state"] == "idle", timeout=30)
    assert [m["content"]["text"] for m in seen if is_stream_of(m, msg_id)] == ["working...", " done\n"]
    assert kernel.reply_to(msg_id)["content"]["status"] == "ok"


def test_text_printed_before_input_reaches_the_client_before_the_prompt_is_answered(kernel):
    msg_id = kernel.kc.execute("print('question follows'); answer = input('? ')", allow_stdin=True)
    kernel.kc.get_stdin_msg(timeout=10)
    seen = kernel.iopub_until(lambda m: is_stream_of(m, msg_id), timeout=10)
    assert seen[-1]["content"]["text"] == "question follows\n"
    kernel.kc.input("42")
    assert kernel.reply_to(msg_id)["content"]["status"] == "ok"


def test_sys_stdout_behaves_like_a_text_stream(kernel):
    _, outputs = kernel.execute(
        "import io, sys\n"
        "print(isinstance(sys.stdout, io.TextIOBase), sys.stdout.isatty(), sys.stdout.writable(),\n"
        "      sys.stdout.encoding, sys.stdout.fileno(), sys.stderr.fileno())\n"
        "n = sys.stdout.write('abc\\n'); sys.stdout.flush(); print(n)\n"
        "try:\n"
        "    sys.stdout.write(b'bytes')\n"
        "except TypeError as e:\n"
        "    print('TypeError')\n"
        "print('\\udcff lone surrogate')\n")
    text = "".join(m["text"] for m in streams(outputs))
    assert text == "True False True utf-8 1 2\nabc\n4\nTypeError\n? lone surrogate\n"


def test_what_child_processes_and_c_code_write_to_1_and_2_reaches_the_cell(kernel):
    _, outputs = kernel.execute(
        "import os, ctypes\n"
        "os.system('echo from a child')\n"
        "os.system('echo to stderr >&2')\n"
        "ctypes.CDLL(None).printf(b'from printf\\n')\n"
        "None")
    text = {name: "".join(m["text"] for m in streams(outputs) if m["name"] == name) for name in ("stdout", "stderr")}
    assert text == {"stdout": "from a child\nfrom printf\n", "stderr": "to stderr\n"}


def test_a_message_with_a_bad_signature_is_dropped_and_reported_on_the_kernels_own_stderr(start_kernel):
    kernel = start_kernel()
    good_key = kernel.kc.session.key
    kernel.kc.session.key = b"not the key"
    kernel.kc.kernel_info()
    kernel.kc.session.key = good_key
    reply, outputs = kernel.execute("print('still serving')")
    assert printed(outputs) == [("stdout", "still serving\n")]
    assert kernel.shutdown() == 0
    stderr = kernel.stderr()
    assert "[splitbrain.kernel_bad_message] dropped a message on the shell channel" in stderr
