"""W1…W9 of issue 4 point 11, written as a user writes them: once inside `with slave:` with the
ordinary `os`, `subprocess` and `open`, once against RPyC classic with `conn.modules`/`conn.builtins`.
The splitbrain functions run inside a `with box:` held by the caller."""

from __future__ import annotations

import os
import subprocess

MiB = 1 << 20


class Paths:
    """Where the workloads read and write (on the slave; here the same machine)."""

    def __init__(self, scratch, bulk, files_dir):
        self.small = os.path.join(scratch, "small.txt")
        self.bulk = str(bulk)
        self.bulk_out = os.path.join(scratch, "bulk-out")
        self.files_dir = str(files_dir)
        self.missing = os.path.join(scratch, "no-such-dir", "no-such-file")


TEXT_4K = "splitbrain\n" * 372 + "0123"  # 4096 characters


# ---- splitbrain: plain Python, inside `with box:` ----

def sb_w1(p):
    os.getcwd()


def sb_w2(p):
    os.path.join("a", "b")


def sb_w3(p):
    with open(p.small, "w") as f:
        f.write(TEXT_4K)
    with open(p.small) as f:
        assert f.read() == TEXT_4K


def sb_w4_read(p):
    with open(p.bulk, "rb") as f:
        return f.read()


def sb_w4_write(p, data):
    with open(p.bulk_out, "wb") as f:
        f.write(data)


def sb_w5_read(p):
    chunks = []
    with open(p.bulk, "rb") as f:
        while chunk := f.read(MiB):
            chunks.append(chunk)
    return chunks


def sb_w5_write(p, data):
    with open(p.bulk_out, "wb") as f:
        for i in range(0, len(data), MiB):
            f.write(data[i:i + MiB])


def sb_w6(p):
    for name in os.listdir(p.files_dir):
        os.stat(os.path.join(p.files_dir, name))


def w6_on_slave(files_dir):
    """W6 as one function, for `box.run` (issue 11 point 6): the same loop, run where the files are."""
    for name in os.listdir(files_dir):
        os.stat(os.path.join(files_dir, name))


def sb_w7(p):
    subprocess.run(["true"])


def sb_w9(p):
    try:
        open(p.missing)
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("W9: the missing file opened")


# ---- RPyC classic: the same, through the connection's netrefs ----

class RpycUser:
    """What an RPyC user holds after `conn = rpyc.classic.connect(...)`."""

    def __init__(self, conn):
        self.conn = conn
        self.os = conn.modules.os
        self.subprocess = conn.modules.subprocess
        self.open = conn.builtins.open

    def w1(self, p):
        self.os.getcwd()

    def w2(self, p):
        self.os.path.join("a", "b")

    def w3(self, p):
        with self.open(p.small, "w") as f:
            f.write(TEXT_4K)
        with self.open(p.small) as f:
            assert f.read() == TEXT_4K

    def w4_read(self, p):
        with self.open(p.bulk, "rb") as f:
            return f.read()

    def w4_write(self, p, data):
        with self.open(p.bulk_out, "wb") as f:
            f.write(data)

    def w5_read(self, p):
        chunks = []
        with self.open(p.bulk, "rb") as f:
            while chunk := f.read(MiB):
                chunks.append(chunk)
        return chunks

    def w5_write(self, p, data):
        with self.open(p.bulk_out, "wb") as f:
            for i in range(0, len(data), MiB):
                f.write(data[i:i + MiB])

    def w6(self, p):
        for name in self.os.listdir(p.files_dir):
            self.os.stat(self.os.path.join(p.files_dir, name))

    def w7(self, p):
        self.subprocess.run(["true"])

    def w9(self, p):
        try:
            self.open(p.missing)
        except FileNotFoundError:
            pass
        else:
            raise AssertionError("W9: the missing file opened")


# ---- explicit RPC (execnet, pyzmq): one remote function per step, as their users write it ----

class RpcUser:
    """What a user of an explicit-RPC tool writes: `call(name, *args)` runs one of rpc_ops.Ops's
    operations remotely (one round trip) and returns its result or raises its error locally."""

    def __init__(self, call):
        self.call = call

    def w1(self, p):
        self.call("getcwd")

    def w2(self, p):
        self.call("join", "a", "b")

    def w3(self, p):
        self.call("write_text", p.small, TEXT_4K)
        assert self.call("read_text", p.small) == TEXT_4K

    def w4_read(self, p):
        return self.call("read_bytes", p.bulk)

    def w4_write(self, p, data):
        self.call("write_bytes", p.bulk_out, data)

    def w5_read(self, p):
        chunks = []
        h = self.call("open", p.bulk, "rb")
        while chunk := self.call("read", h, MiB):
            chunks.append(chunk)
        self.call("close", h)
        return chunks

    def w5_write(self, p, data):
        h = self.call("open", p.bulk_out, "wb")
        for i in range(0, len(data), MiB):
            self.call("write", h, data[i:i + MiB])
        self.call("close", h)

    def w6(self, p):
        for name in self.call("listdir", p.files_dir):
            self.call("stat", os.path.join(p.files_dir, name))  # the path joined locally, as its user would

    def w7(self, p):
        self.call("run", ["true"])

    def w9(self, p):
        try:
            self.call("read_text", p.missing)
        except FileNotFoundError:
            pass
        else:
            raise AssertionError("W9: the missing file opened")
