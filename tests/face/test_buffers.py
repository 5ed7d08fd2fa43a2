"""Issue 9 point 4: a local writable buffer passed to a slave (readinto, readinto1, recv_into) comes
back filled into the caller's buffer (copy-in/copy-out)."""

import array
import hashlib
import io
import os
import shutil
import socket
import subprocess

import pytest

from conftest import wait_until
from splitbrain import RemoteObject

CONTENT = os.urandom(700_000)  # several 256 KiB readinto chunks, each above the raw-frame threshold


def test_hashlib_file_digest_of_a_slave_file_is_the_digest_of_its_content(linux_box, tmp_path):
    with linux_box:
        with open(tmp_path / "data.bin", "wb") as f:
            f.write(CONTENT)
        with open(tmp_path / "data.bin", "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    assert digest == hashlib.sha256(CONTENT).hexdigest()


def test_readinto_fills_a_bytearray_a_memoryview_slice_and_an_array(linux_box, tmp_path):
    with linux_box:
        with open(tmp_path / "small.bin", "wb") as f:
            f.write(b"0123456789abcdef")
        with open(tmp_path / "small.bin", "rb") as f:
            whole = bytearray(4)
            assert f.readinto(whole) == 4
            assert whole == b"0123"
            target = bytearray(b"........")
            assert f.readinto1(memoryview(target)[2:6]) == 4
            assert target == b"..4567.."  # the parts outside the slice are untouched
            numbers = array.array("B", bytes(4))
            assert f.readinto(numbers) == 4
            assert numbers.tobytes() == b"89ab"
            unchanged = bytearray(b"keep")
            f.seek(0, os.SEEK_END)
            assert f.readinto(unchanged) == 0
            assert unchanged == b"keep"


def test_socket_recv_into_fills_the_callers_buffer(linux_box):
    with linux_box:
        a, b = socket.socketpair()
        try:
            b.sendall(b"hello")
            buf = bytearray(16)
            n = a.recv_into(buf)
            assert bytes(buf[:n]) == b"hello"
            assert buf[n:] == bytes(16 - n)
            b.sendall(b"xy")
            view = memoryview(buf)[10:]
            assert a.recv_into(view, 2) == 2
            assert bytes(buf[10:12]) == b"xy"
        finally:
            a.close()
            b.close()


def test_a_local_buffered_reader_over_a_remote_raw_file_reads_its_content(linux_box, tmp_path):
    with linux_box:
        with open(tmp_path / "raw.bin", "wb") as f:
            f.write(CONTENT)
        raw = open(tmp_path / "raw.bin", "rb", buffering=0)
        reader = io.BufferedReader(raw, buffer_size=65536)
        try:
            assert reader.read(10) == CONTENT[:10]
            assert reader.read() == CONTENT[10:]
        finally:
            reader.close()
    assert raw.closed


def test_a_bytearray_the_slave_does_not_change_is_not_sent_back(linux_box, tmp_path):
    """Copy-out only when changed: a write of a bytearray costs no bytes on the way back (the
    caller's buffer is left as it is, even when it changes while the call is in flight)."""
    with linux_box:
        with open(tmp_path / "w.bin", "wb") as f:
            data = bytearray(b"written")
            assert f.write(data) == 7
            assert data == b"written"
        with open(tmp_path / "w.bin", "rb") as f:
            assert f.read() == b"written"


@pytest.fixture
def slave_pty_pair(linux_box, tmp_path):
    """A socat pty pair started on the slave: (the port the slave's pyserial opens, the other end)."""
    if shutil.which("socat") is None:
        pytest.fail("socat is not installed: scripts/setup.sh installs it")
    port_path, other_path = tmp_path / "ttySB0", tmp_path / "ttySB1"
    with linux_box:
        socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={port_path}", f"pty,raw,echo=0,link={other_path}"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert isinstance(socat, RemoteObject)  # socat is the slave's process
    try:
        with linux_box:
            wait_until(lambda: socat.poll() is not None or (os.path.exists(port_path) and os.path.exists(other_path)),
                       15, "socat's two pty links on the slave")
            assert socat.poll() is None, f"socat exited: {socat.stderr.read()!r}"
        yield str(port_path), str(other_path)
    finally:
        with linux_box:
            socat.terminate()
            try:
                socat.wait(10)
            except subprocess.TimeoutExpired:
                socat.kill()
                socat.wait(10)
            socat.stderr.close()


def test_pyserial_readinto_on_a_slaves_pty_fills_the_callers_buffer(linux_box, slave_pty_pair):
    port_path, other_path = slave_pty_pair
    import serial
    with linux_box:
        port = serial.Serial(port_path, timeout=5)
    assert isinstance(port, RemoteObject)  # opened by the slave's pyserial
    try:
        with serial.Serial(other_path, timeout=5) as instrument:  # the other end, written from the master
            instrument.write(b"T=21.5\nV=3.30\n")
            instrument.flush()
            line = bytearray(7)
            assert port.readinto(line) == 7  # pyserial's readinto: read(len(b)), then b[:n] = data
            assert line == b"T=21.5\n"
            rest = bytearray(b"##########")
            assert port.readinto(memoryview(rest)[2:9]) == 7
            assert rest == b"##V=3.30\n#"  # only the slice was written
            with linux_box:
                port.timeout = 0.2
            quiet = bytearray(b"keep")
            assert port.readinto(quiet) == 0  # nothing more came: the timeout, the buffer untouched
            assert quiet == b"keep"
    finally:
        port.close()
