"""Issue 10 point 10: a Ctrl-C that lands while remote output is being written is never swallowed.
It reaches the waiting caller as KeyboardInterrupt and cancels the remote call, as an interrupt
during the wait does; nothing prints "Exception ignored"."""

import os
import signal
import subprocess
import sys
import textwrap

from conftest import wait_until

# The client floods its stdout with the slave's output, and the remote loop appends to a file so
# that the test can see whether it still runs. After the interrupt the client checks, with the
# session still open, that the file stopped growing and that the session is usable, then re-raises.
CLIENT = textwrap.dedent("""
    import os, signal, sys, time, splitbrain
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even if started in the background
    box = splitbrain.spawn("chatty")
    marks = sys.argv[1]
    loop = ("import time\\n"
            "f = open(%r, 'a')\\n"
            "while True:\\n"
            "    print('x' * 400)\\n"
            "    f.write('.'); f.flush()\\n") % marks
    try:
        box.modules.builtins.exec(loop)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        before = os.path.getsize(marks)
        time.sleep(1.5)
        print("stopped", os.path.getsize(marks) == before, file=sys.stderr, flush=True)
        with box:
            print("usable", os.getpid() == box.pid, file=sys.stderr, flush=True)
        raise
""")


def test_a_sigint_while_remote_output_is_written_interrupts_and_cancels_the_call(tmp_path):
    marks = tmp_path / "marks"
    marks.touch()
    out = open(tmp_path / "stdout", "wb")
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(marks)], stdout=out, stderr=subprocess.PIPE,
                              env=dict(os.environ))
    try:
        # The call runs and its output floods the client: most of its time is spent writing it.
        wait_until(lambda: marks.stat().st_size > 20000, timeout=30, what="the remote loop to run")
        wait_until(lambda: (tmp_path / "stdout").stat().st_size > 1_000_000, timeout=30,
                   what="the remote output to reach the client's stdout")
        client.send_signal(signal.SIGINT)
        try:
            _, stderr = client.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            client.kill()
            _, stderr = client.communicate()
            raise AssertionError("the SIGINT did not end the call:\n" + stderr.decode(errors="replace")[-3000:])
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        out.close()
    text = stderr.decode(errors="replace")
    assert "Exception ignored" not in text, text[-3000:]
    lines = text.splitlines()
    assert lines[:3] == ["interrupted", "stopped True", "usable True"], text[-3000:]
    assert lines[-1] == "KeyboardInterrupt", text[-3000:]
    assert client.returncode == -signal.SIGINT  # an uncaught KeyboardInterrupt ends Python by SIGINT
