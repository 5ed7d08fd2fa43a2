"""Issue 10 point 2, the gap: a reply lost inside a connection that broke. The client is stopped
(SIGSTOP) while its call runs, so the reply waits in its socket's receive buffer; that socket is
then killed (`ss -K`, a reset), and the reply is gone with it although the agent delivered it.
When the client resumes it reconnects, and its ping names the requests it still waits for: the
agent sends a kept reply again, or says that it cannot, instead of the call waiting for ever."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import splitbrain

CLIENT = textwrap.dedent("""
    import sys
    import splitbrain
    box = splitbrain.connect(sys.argv[1], name="bench-a", timeout=3.0)
    box.modules.os.getpid()
    print("calling", flush=True)
    try:
        out = box.modules.subprocess.check_output(["sh", "-c", "sleep 1; head -c " + sys.argv[2] + " /dev/zero"])
        print("reply", len(out), flush=True)
    except Exception as e:
        print("error", type(e).__name__, e, flush=True)
    print("next", box.modules.os.getpid() > 0, flush=True)
""")


def direct_ports(agent_pid):
    """The ports the agent's workers listen on for their clients' direct connections."""
    workers = subprocess.run(["pgrep", "-P", str(agent_pid)], capture_output=True, text=True).stdout.split()
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10).stdout
    return [int(line.split()[3].rsplit(":", 1)[1]) for line in listening.splitlines()
            if any(f"pid={pid}," in line for pid in workers)]


def kill_connections_to(port, agent_pid):
    """Resets this machine's TCP sockets whose peer is 127.0.0.1:port (the client's side), and
    those to the workers' direct ports: every connection of the client to the agent."""
    killed = 0
    for each in [port, *direct_ports(agent_pid)]:
        done = subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", str(each)], capture_output=True,
                              text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        killed += done.stdout.count("ESTAB")
    return killed


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to reset a socket")
@pytest.mark.parametrize("size, expected", [
    (900_000, "reply 900000"),  # past what the stopped socket buffers, under what the agent keeps
    (3 << 20, "error ProtocolError [splitbrain.reply_lost] the call ran on bench-a"),
])
def test_a_reply_lost_with_its_connection_is_sent_again_or_reported(tmp_path, size, expected):
    box = splitbrain.spawn("reply-lost")
    try:
        port = int(box.address.rsplit(":", 1)[1])
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(box._agent.connection_file), str(size)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert client.stdout.readline().strip() == "calling"
            time.sleep(0.3)
            os.kill(client.pid, signal.SIGSTOP)
            time.sleep(2.0)  # the call (1 s) ends; its reply sits in the stopped client's socket
            if kill_connections_to(port, box._agent.process.pid) == 0:
                pytest.skip("this kernel cannot reset a socket from outside (ss -K: CONFIG_INET_DIAG_DESTROY)")
            os.kill(client.pid, signal.SIGCONT)
            out, _ = client.communicate(timeout=30)
        finally:
            if client.poll() is None:
                os.kill(client.pid, signal.SIGCONT)
                client.kill()
                client.wait()
        assert expected in out, out
        assert "next True" in out, out  # the session goes on
        log = box._agent.log_path.read_text(errors="replace")
        assert ("sent again (its client's connection was lost with it)" in log) == expected.startswith("reply"), log
    finally:
        box.close()
