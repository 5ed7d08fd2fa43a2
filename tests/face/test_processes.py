"""Issue 9 point 7: processes and descriptors stay where they belong. os.fork(), os.forkpty() and
os._exit() on a slave are a clear error instead of forking or ending the worker; the worker's own
descriptors are out of the way of user code that closes small numbers."""

import os

import pytest


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


def test_numpy_tofile_and_fromfile_in_a_slave_context_fail_cleanly_and_the_client_is_intact(linux_box, tmp_path):
    numpy = pytest.importorskip("numpy")
    local = open(tmp_path / "master.txt", "w+")  # one of the master's own descriptors
    local.write("mine")
    local.flush()
    with linux_box:
        # numpy's C code dup()s f.fileno(): the slave's descriptor is no number the master has
        with pytest.raises(OSError) as written:
            numpy.arange(3).tofile(str(tmp_path / "x.bin"))
        with pytest.raises(OSError) as read:
            numpy.fromfile(str(tmp_path / "x.bin"))
        assert os.path.exists(tmp_path / "x.bin")  # numpy opened it on the slave, via open
    assert written.value.errno == read.value.errno == 9
    assert linux_box.ping() > 0
    with linux_box:
        assert os.getcwd()
    local.seek(0)
    assert local.read() == "mine"
    local.close()
