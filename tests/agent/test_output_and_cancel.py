"""Output of the worker and its children arrives live and before the reply; cancel interrupts
exactly the running call, promptly, and leaves nothing behind."""
import os
import re
import subprocess
import time

import pytest

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
    assert header == {"ev": "out", "fd": 1, "d": b"started\n", "at": len(b"started\n") + 512}
    assert client.wait_reply(request_id)["ok"]
    assert client.output(1) == b"finished\n"


def start(client, target, *args, path):
    request_id = next(client.ids)
    client.send({"id": request_id, "op": "call", "o": target.wire(), "path": path, "a": list(args)})
    return request_id


def cancel(client, target_id):
    """Sends one cancel for target_id; returns when it was sent and the cancel's own id."""
    cancel_id = next(client.ids)
    sent_at = time.monotonic()
    client.send({"id": cancel_id, "op": "cancel", "target": target_id})
    return sent_at, cancel_id


# x86-64 system call numbers, as /proc/PID/syscall shows them.
SYSCALLS = {"clock_nanosleep": {230}, "recvfrom": {45}, "wait4": {61}, "select": {23, 270}}


def blocked_in(pid, syscall):
    """True while the worker's main thread (tid == pid) waits in that system call."""
    fields = open(f"/proc/{pid}/syscall").read().split()
    return fields[0].isdigit() and int(fields[0]) in SYSCALLS[syscall]


def assert_interrupted_within_200_ms(client, target_id, sent_at, cancel_id):
    reply = client.wait_reply(target_id, timeout=5)
    elapsed = time.monotonic() - sent_at
    assert reply["ok"] is False, reply
    assert reply["e"]["type"] == "builtins.KeyboardInterrupt"
    assert elapsed < 0.2, f"KeyboardInterrupt took {elapsed * 1000:.0f} ms"
    assert client.wait_reply(cancel_id)["r"] is True


def cancel_once_blocked(client, target_id, syscall):
    """Waits until the call blocks in syscall, then cancels it once; it ends within 200 ms."""
    worker = client.info["pid"]
    wait_until(lambda: blocked_in(worker, syscall), what=f"the call to block in {syscall}")
    assert target_id not in client.replies
    assert_interrupted_within_200_ms(client, target_id, *cancel(client, target_id))


def test_cancel_interrupts_a_sleep_within_200_ms(client):
    time_ = client.module("time")
    cancel_once_blocked(client, start(client, time_, 60, path=["sleep"]), "clock_nanosleep")


def test_a_cancel_sent_right_behind_its_call_is_never_lost(client):
    # SHALL: cancelling a call raises KeyboardInterrupt in it, whether or not the worker has
    # started it yet when the cancel arrives.
    time_ = client.module("time")
    for _ in range(40):
        sleeping = start(client, time_, 60, path=["sleep"])
        assert_interrupted_within_200_ms(client, sleeping, *cancel(client, sleeping))


def test_a_cancel_of_a_call_queued_behind_another_ends_it_without_running_it(client):
    time_ = client.module("time")
    first = start(client, time_, 0.3, path=["sleep"])
    queued = start(client, time_, 60, path=["sleep"])
    _, cancel_id = cancel(client, queued)
    assert client.wait_reply(cancel_id)["r"] is True
    assert client.wait_reply(first)["ok"], "the running call was not the one cancelled"
    first_done = time.monotonic()
    reply = client.wait_reply(queued, timeout=5)
    assert reply["e"]["type"] == "builtins.KeyboardInterrupt"
    assert time.monotonic() - first_done < 0.2
    assert client.call(time_, 0.01, path=["sleep"])["ok"]  # nothing left over for the next call


def running_process(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def running_children(pid):
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            children += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except FileNotFoundError:
            continue
    return [child for child in children if running_process(child)]


def test_cancel_during_subprocess_run_leaves_no_child(client):
    subprocess_ = client.module("subprocess")
    running = start(client, subprocess_, ["sh", "-c", "echo $$; exec sleep 60"], path=["run"])
    header, _ = client.receive(timeout=5)
    assert header["ev"] == "out"
    child = int(header["d"])
    assert os.path.exists(f"/proc/{child}")
    cancel_once_blocked(client, running, "wait4")
    # run() kills the child; after a KeyboardInterrupt Popen does not reap it at once (CPython's
    # own behaviour: the next subprocess call does), so a zombie counts as gone.
    wait_until(lambda: not running_process(child), timeout=5, what=f"child {child} to be gone")


def test_a_cancelled_subprocess_run_leaves_no_child_wherever_the_cancel_lands(client):
    # Cancels land before the call starts, inside Popen.__init__ (between fork and exec), or in
    # run()'s wait: in every case no child of the worker may go on running.
    subprocess_ = client.module("subprocess")
    worker = client.info["pid"]
    for attempt in range(30):
        running = start(client, subprocess_, ["sleep", "60"], path=["run"])
        time.sleep(attempt * 0.0003)  # deliberately spread the cancels over the call's first 9 ms
        sent_at, cancel_id = cancel(client, running)
        reply = client.wait_reply(running, timeout=5)
        assert reply["e"]["type"] == "builtins.KeyboardInterrupt", reply
        assert time.monotonic() - sent_at < 0.2
        client.wait_reply(cancel_id)
        wait_until(lambda: not running_children(worker), timeout=1,
                   what=f"no running child after cancel {attempt}: {running_children(worker)}")


def test_cancel_interrupts_a_blocking_socket_receive(client):
    socket_ = client.module("socket")
    pair = client.value(socket_, path=["socketpair"])
    cancel_once_blocked(client, start(client, pair[0], 10, path=["recv"]), "recvfrom")


@pytest.fixture
def serial_pty(tmp_path):
    """Two linked pseudo-terminals from socat: (the one the worker reads, the other end)."""
    process = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ptys = []
    deadline = time.monotonic() + 10
    while len(ptys) < 2 and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(r"PTY is (\S+)", line)
        if match:
            ptys.append(match.group(1))
    assert len(ptys) == 2, f"socat gave no pty pair: {ptys}"
    yield ptys
    process.terminate()
    process.wait(5)


def test_cancel_interrupts_a_serial_read_without_timeout(client, serial_pty):
    serial_ = client.module("serial")
    port = client.value(serial_, serial_pty[0], path=["Serial"])
    cancel_once_blocked(client, start(client, port, 1, path=["read"]), "select")
    assert client.call(port, path=["close"])["ok"]


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
