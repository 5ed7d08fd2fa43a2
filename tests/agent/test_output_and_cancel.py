"""Output of the worker and its children arrives live and before the reply; cancel interrupts
exactly the running call, promptly, and leaves nothing behind."""
import os
import time

from conftest import wait_until
from wire import Ref


def test_print_output_arrives_before_the_reply(client):
    builtins = client.module("builtins")
    reply = client.call(builtins, "hello from the slave", path=["print"])
    assert reply["ok"]
    assert client.output(1) == b"hello from the slave\n"


def test_child_process_output_arrives_before_the_reply(client):
    subprocess_ = client.module("subprocess")
    reply = client.call(subprocess_, ["sh", "-c", "echo hi; echo oops >&2"], path=["run"])
    assert reply["ok"], reply.get("e")
    assert client.output(1) == b"hi\n"
    assert client.output(2) == b"oops\n"


def test_a_lot_of_output_is_complete_and_in_order(client):
    subprocess_ = client.module("subprocess")
    reply = client.call(subprocess_, ["sh", "-c", "seq 1 100000"], path=["run"])
    assert reply["ok"]
    assert client.output(1) == b"".join(b"%d\n" % i for i in range(1, 100001))


def test_output_is_live_while_the_call_runs(client):
    subprocess_ = client.module("subprocess")
    request_id = next(client.ids)
    client.send({"id": request_id, "op": "call", "o": subprocess_.wire(), "path": ["run"],
                 "a": [["sh", "-c", "echo started; sleep 2; echo finished"]]})
    header, _ = client.receive(timeout=1.5)  # well before the call can end
    assert header == {"ev": "out", "fd": 1, "d": b"started\n"}
    assert client.wait_reply(request_id)["ok"]
    assert client.output(1) == b"finished\n"


def start(client, target, *args, path):
    request_id = next(client.ids)
    client.send({"id": request_id, "op": "call", "o": target.wire(), "path": path, "a": list(args)})
    return request_id


def cancel_until_running(client, target_id, timeout=5.0):
    """Sends cancel until the agent reports target_id running (and interrupted); returns when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cancel_id = next(client.ids)
        sent_at = time.monotonic()
        client.send({"id": cancel_id, "op": "cancel", "target": target_id})
        reply = client.wait_reply(cancel_id)
        assert target_id not in client.replies, f"target replied before it was cancelled: {client.replies}"
        if reply["r"] is True:
            return sent_at
        time.sleep(0.005)
    raise AssertionError("the call never ran")


def test_cancel_interrupts_a_sleep_within_200_ms(client):
    time_ = client.module("time")
    sleeping = start(client, time_, 60, path=["sleep"])
    sent_at = cancel_until_running(client, sleeping)
    reply = client.wait_reply(sleeping, timeout=5)
    elapsed = time.monotonic() - sent_at
    assert reply["ok"] is False
    assert reply["e"]["type"] == "builtins.KeyboardInterrupt"
    assert elapsed < 0.2, f"KeyboardInterrupt took {elapsed * 1000:.0f} ms"


def running_process(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_cancel_during_subprocess_run_leaves_no_child(client):
    subprocess_ = client.module("subprocess")
    running = start(client, subprocess_, ["sh", "-c", "echo $$; exec sleep 60"], path=["run"])
    header, _ = client.receive(timeout=5)
    assert header["ev"] == "out"
    child = int(header["d"])
    assert os.path.exists(f"/proc/{child}")
    # Interrupted inside Popen.__init__ (between fork and exec's confirmation), CPython leaves the
    # child running: a terminal's Ctrl-C would have hit it too. So interrupt once run() waits on it.
    worker = client.info["pid"]
    wait_until(lambda: open(f"/proc/{worker}/wchan").read() == "do_wait", message="run() to wait for its child")
    cancel_until_running(client, running)
    reply = client.wait_reply(running, timeout=5)
    assert reply["e"]["type"] == "builtins.KeyboardInterrupt"
    # run() kills the child; after a KeyboardInterrupt Popen does not reap it at once (CPython's
    # own behaviour: the next subprocess call does), so a zombie counts as gone.
    wait_until(lambda: not running_process(child), timeout=5, message=f"child {child} to be gone")


def test_cancel_interrupts_a_blocking_socket_receive(client):
    socket_ = client.module("socket")
    pair = client.value(socket_, path=["socketpair"])
    receiving = start(client, pair[0], 10, path=["recv"])
    cancel_until_running(client, receiving)
    assert client.wait_reply(receiving, timeout=5)["e"]["type"] == "builtins.KeyboardInterrupt"


def test_cancel_of_a_call_that_is_not_running_answers_false(client):
    assert client.ok("cancel", target=12345) is False


def test_a_late_interrupt_never_leaks_into_the_next_call(client):
    time_ = client.module("time")
    builtins = client.module("builtins")
    for _ in range(30):
        short = start(client, time_, 0.002, path=["sleep"])
        cancel_id = next(client.ids)
        client.send({"id": cancel_id, "op": "cancel", "target": short})
        client.wait_reply(short)
        client.wait_reply(cancel_id)
        following = client.call(builtins, 0.01, path=["abs"])
        assert following["ok"], following["e"]
    # And the worker still sleeps undisturbed.
    assert client.call(time_, 0.2, path=["sleep"])["ok"]


def test_ping_is_answered_while_the_worker_is_busy(client):
    time_ = client.module("time")
    sleeping = start(client, time_, 2, path=["sleep"])
    started = time.monotonic()
    assert client.request("ping")["ok"]
    assert time.monotonic() - started < 0.5
    assert client.wait_reply(sleeping)["ok"]



def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_call_that_closes_stdout_leaves_the_worker_responsive_and_idle(client):
    assert client.call(client.module("os"), 1, path=["close"])["ok"]
    before = cpu_seconds(client.info["pid"])
    assert client.call(client.module("time"), 0.5, path=["sleep"])["ok"]
    assert cpu_seconds(client.info["pid"]) - before < 0.2  # no busy loop on the closed pipe
    assert client.call(client.module("builtins"), "to stderr", path=["print"],
                       file=Ref(client.ok("getattr", o=client.module("sys").wire(), name="stderr")))["ok"]
    assert client.output(2) == b"to stderr\n"
