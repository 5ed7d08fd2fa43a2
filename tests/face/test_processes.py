"""Issue 9 point 7: processes and descriptors stay where they belong. os.fork(), os.forkpty() and
os._exit() on a slave are a clear error instead of forking or ending the worker; the worker's own
descriptors are out of the way of user code that closes small numbers."""

import os

import pytest

from conftest import run_python


# Looked up when called, inside the context (as user code does): the slave's os.
@pytest.mark.parametrize("call", [lambda: os.fork(), lambda: os.forkpty(), lambda: os._exit(0)],
                         ids=["os.fork", "os.forkpty", "os._exit"])
def test_forking_or_exiting_the_worker_is_a_clear_error(linux_box, call):
    pid_before = linux_box.pid
    with linux_box:
        with pytest.raises(RuntimeError, match=r"^\[splitbrain\.not_on_a_slave\] os\.(fork|forkpty|_exit)\(\)"):
            call()
        assert os.getpid() == pid_before  # the same worker still answers
    assert linux_box.ping() > 0


def test_the_error_says_what_to_use_instead(linux_box):
    with linux_box:
        with pytest.raises(RuntimeError, match="start processes with subprocess"):
            os.fork()
        with pytest.raises(RuntimeError, match=r"end the session with slave\.close\(\)"):
            os._exit(3)


def test_closing_every_small_descriptor_on_the_slave_leaves_the_session_working(fresh_box, tmp_path):
    """SHALL: user code that closes or dup2s a small descriptor never hits the worker's own."""
    with fresh_box:
        os.closerange(3, 257)
        assert os.getcwd()  # another call: the worker's sockets and pipes were not among them
        fd = os.open(tmp_path / "low.txt", os.O_WRONLY | os.O_CREAT)
        assert fd < 257  # the low numbers are the user's
        os.dup2(fd, 5)
        os.write(5, b"through 5")
        os.close(5)
        os.close(fd)
        print("output still flows")
        with open(tmp_path / "low.txt") as f:
            assert f.read() == "through 5"
    assert fresh_box.ping() > 0


def test_the_workers_own_sockets_pipes_and_eventfds_are_above_1023(fresh_box):
    with fresh_box:
        targets = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                targets[int(name)] = os.readlink(f"/proc/self/fd/{name}")
            except OSError:  # the listing's own descriptor, closed by now
                pass
    own = {fd: target for fd, target in targets.items()
           if target.startswith(("socket:", "pipe:", "anon_inode:"))}
    assert len(own) >= 4, targets  # libzmq's sockets, eventfds and epoll, the output pipes
    assert all(fd >= 1024 for fd in own if fd > 2), own


def test_a_remote_descriptor_works_on_its_slave_and_is_never_one_of_the_masters(linux_box, tmp_path):
    with linux_box:
        f = open(tmp_path / "d.bin", "wb")
        fd = f.fileno()
        assert fd.remote >= 3
        assert os.fstat(fd).st_size == 0  # inside the context: the slave's own descriptor
        f.write(b"abc")
        f.flush()
        assert os.fstat(f.fileno()).st_size == 3
        assert os.read(os.open(tmp_path / "d.bin", os.O_RDONLY), 3) == b"abc"
    with pytest.raises(OSError) as caught:
        os.fstat(fd)  # on the master no descriptor has that number
    assert caught.value.errno == 9
    with pytest.raises(OSError):
        os.fdopen(fd)
    f.close()
    assert "on linux-box" in repr(fd)


@pytest.mark.parametrize("name", ["SIGUSR1", "SIGUSR2", "SIGALRM", "SIGHUP", "SIGTSTP"])
def test_a_child_that_signals_its_parent_does_not_end_the_worker(linux_box, name):
    """test_subprocess's test_communicate_eintr: the child sends SIGUSR1 to its parent, the worker
    (the test installed its handler on the master); before, the worker died of it and every later
    call was session_lost."""
    import subprocess
    pid_before = linux_box.pid
    with linux_box:
        done = subprocess.run(["sh", "-c", f"kill -{name[3:]} $PPID; echo sent"], capture_output=True, text=True,
                              timeout=30)
        assert done.stdout == "sent\n", done
        assert os.getpid() == pid_before  # the same worker still answers
    assert linux_box.ping() > 0


@pytest.mark.parametrize("call", [
    lambda signal: os.kill(os.getpid(), signal.SIGKILL),
    lambda signal: os.kill(os.getpid(), signal.SIGTERM),
    lambda signal: os.kill(0, signal.SIGSTOP),
    lambda signal: os.killpg(os.getpgrp(), signal.SIGQUIT),
    lambda signal: signal.raise_signal(signal.SIGABRT),
], ids=["kill-self-SIGKILL", "kill-self-SIGTERM", "kill-group-SIGSTOP", "killpg-SIGQUIT", "raise_signal-SIGABRT"])
def test_a_signal_that_would_end_the_worker_itself_is_a_clear_error(linux_box, call):
    pid_before = linux_box.pid
    signal = linux_box.modules.signal  # the slave's
    with linux_box:
        with pytest.raises(RuntimeError, match=r"^\[splitbrain\.not_on_a_slave\] (os\.kill|os\.killpg|signal\."
                                               r"raise_signal)\(.*would end or stop the agent's worker"):
            call(signal)
        assert os.getpid() == pid_before
        os.kill(os.getpid(), 0)  # signal 0 only checks: allowed
        os.kill(os.getpid(), signal.SIGUSR1)  # ignored by the worker's own handler: allowed, harmless
    assert linux_box.ping() > 0


def test_a_worker_that_dies_anyway_says_how_in_every_later_error(fresh_box):
    """Killed on purpose (a child's SIGKILL to its parent cannot be caught): the calls that follow
    say the worker's pid and the signal, not only that it died."""
    import subprocess

    from splitbrain import SessionLost
    pid = fresh_box.pid
    with fresh_box:
        with pytest.raises(SessionLost) as first:
            subprocess.run(["sh", "-c", "kill -KILL $PPID; sleep 5"], timeout=30)
        with pytest.raises(SessionLost) as later:
            os.getcwd()
    for caught in (first, later):
        assert f"(pid {pid}) ended with killed by SIGKILL" in str(caught.value), caught.value


def test_the_masters_own_close_and_dup2_given_a_slaves_descriptor_never_touch_the_masters():
    """test_tempfile's mkstemped.__del__ called a captured os.close with the number tempfile.mkstemp
    returned on the slave: it closed one of the client's ZeroMQ descriptors and the master aborted
    (`Bad file descriptor (src/epoll.cpp:145)`). Every new descriptor a slave's os/tempfile returns
    is a RemoteDescriptor, a number no descriptor of the master has; the master's own close, dup2
    and fstat (posix.*, what a name bound at import or C code calls) fail with EBADF on it."""
    done = run_python("""
        import errno, os, posix, tempfile, splitbrain
        box = splitbrain.spawn("descriptors")
        with box:
            fd, name = tempfile.mkstemp()
            r, w = os.pipe()
            again = os.open(name, os.O_RDONLY)
            copy = os.dup(again)
            f = open(name, "wb")
            remotes = [fd, r, w, again, copy, f.fileno()]
            print("slave's", all(isinstance(d, splitbrain.RemoteDescriptor) for d in remotes),
                  [d.remote for d in remotes] == [int(str(d)) for d in remotes], again == again.remote)
        refused = 0
        for d in remotes:
            for call in (lambda: posix.close(d), lambda: posix.dup2(d, 50), lambda: posix.dup2(0, d),
                         lambda: posix.fstat(d), lambda: os.fdopen(d)):
                try:
                    call()
                except OSError as e:
                    refused += e.errno == errno.EBADF
        print("refused", refused == 5 * len(remotes))
        with box:  # the client is intact, and the slave's descriptors are still the slave's
            os.write(w, b"x")
            print("pipe", os.read(r, 1) == b"x", os.fstat(fd).st_size == 0)
            for d in (fd, r, w, again, copy):
                os.close(d)
            f.close()
            os.remove(name)
        box.close()
        print("closed")
    """, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Aborted" not in done.stderr and "Bad file descriptor (src/" not in done.stderr, done.stderr
    assert done.stdout.splitlines() == ["slave's True True True", "refused True", "pipe True True", "closed"]


def test_numpy_given_a_remote_file_object_fails_cleanly_and_the_master_exits_cleanly():
    """numpy given a remote file object fails with a clear error, never acting on one of the
    master's own descriptors; the next call works and the master does not abort at exit."""
    pytest.importorskip("numpy")
    done = run_python("""
        import os, numpy, splitbrain
        box = splitbrain.spawn("numpy-files")
        with box:
            # numpy's C code wants a descriptor of its own for the file (os.dup of its fileno()): refused,
            # with the id and what to do instead; never one of the master's descriptors
            with open("x.bin", "wb") as f:
                try:
                    numpy.arange(3).tofile(f)
                except RuntimeError as e:
                    print("tofile", type(e).__name__, str(e).startswith(
                        "[splitbrain.local_io_in_slave_context] os.dup(") and "f.write(array.tobytes())" in str(e))
            with open("x.bin", "rb") as f:
                try:
                    numpy.fromfile(f)
                except RuntimeError as e:
                    print("fromfile", type(e).__name__, str(e).startswith(
                        "[splitbrain.local_io_in_slave_context] os.dup(") and "numpy.frombuffer" in str(e))
            print("next call", os.path.exists("x.bin"))
            os.remove("x.bin")
        box.close()
        print("closed")
    """, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Aborted" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["tofile", "fromfile", "next", "closed"], lines
    assert lines[0].endswith("True") and lines[1].endswith("True") and lines[2] == "next call True", lines


def test_remote_descriptors_in_a_set_or_a_command_line_are_the_slaves_numbers(linux_box):
    """test_subprocess's pass_fds=set(...) and f"...{fd}": a RemoteDescriptor is the slave's number
    in a set argument and in a formatted string."""
    import subprocess
    with linux_box:
        r, w = os.pipe()
        subprocess.run(["sh", "-c", f"echo through >&{w}"], pass_fds={w}, check=True, timeout=30)
        assert os.read(r, 100) == b"through\n"
        assert {r: "read end"}[r.remote] == "read end"  # hashes and compares as the slave's number
        os.close(r)
        os.close(w)


def test_the_masters_fcntl_and_select_given_a_slaves_descriptor_act_on_that_slave(linux_box):
    """test_subprocess's fcntl.fcntl(p.stdin.fileno(), F_GETPIPE_SZ) and select.select([p.stdout]):
    fcntl and select are not routed; given the slave's descriptors they ask the slave (before:
    local_io_in_slave_context, `filedescriptor out of range in select()`)."""
    import fcntl
    import select
    import subprocess
    with linux_box:
        r, w = os.pipe()
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 65536 * 2)
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == 65536 * 2
        assert select.select([r], [w], [], 0) == ([], [w], [])
        os.write(w, b"x")
        assert select.select([r], [], [], 5)[0] == [r]
        p = subprocess.Popen(["sh", "-c", "echo ready"], stdout=subprocess.PIPE)
        assert select.select([p.stdout], [], [], 10)[0][0] is p.stdout  # the proxy the caller gave
        assert fcntl.fcntl(p.stdout.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        p.communicate(timeout=30)
        os.close(r)
        os.close(w)
    assert fcntl.fcntl(0, fcntl.F_GETFD) >= 0  # the master's own, outside: as before


def test_arithmetic_on_a_remote_descriptor_is_on_the_slaves_number(linux_box, tmp_path):
    """test_os's test_closerange: `second != first + 1`, then os.closerange(first, first + 2)."""
    with linux_box:
        first = os.open(tmp_path / "c.txt", os.O_CREAT | os.O_RDWR)
        second = os.dup(first)
        assert second - first == second.remote - first.remote and first + 1 == first.remote + 1
        assert 1 + first == first.remote + 1 and (first + 1) - 1 == first
        os.closerange(min(first, second), max(first, second) + 1)
        with pytest.raises(OSError):
            os.write(first, b"a")
