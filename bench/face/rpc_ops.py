"""The operations the explicit-RPC peers (execnet, pyzmq) dispatch on their server side, one per
request: what a user of an RPC tool writes as one remote function per workload step.

This file is also execnet's remote program: `gateway.remote_exec(rpc_ops)` runs it as
`__channelexec__`, serving (name, args) tuples from the channel until it closes. Only plain data
crosses (str, bytes, int, float, tuple, list, None): both peers' serialisers take exactly that."""

import os
import subprocess


class Ops:
    def __init__(self):
        self.files = {}
        self.next_handle = 1

    def getcwd(self):
        return os.getcwd()

    def join(self, a, b):
        return os.path.join(a, b)

    def write_text(self, path, text):
        with open(path, "w") as f:
            f.write(text)

    def read_text(self, path):
        with open(path) as f:
            return f.read()

    def read_bytes(self, path):
        with open(path, "rb") as f:
            return f.read()

    def write_bytes(self, path, data):
        with open(path, "wb") as f:
            f.write(data)

    def open(self, path, mode):
        handle = self.next_handle
        self.next_handle += 1
        self.files[handle] = open(path, mode)
        return handle

    def read(self, handle, n):
        return self.files[handle].read(n)

    def write(self, handle, data):
        return self.files[handle].write(data)

    def close(self, handle):
        self.files.pop(handle).close()

    def listdir(self, path):
        return os.listdir(path)

    def stat(self, path):
        return tuple(os.stat(path))

    def run(self, argv):
        return subprocess.run(argv).returncode


def dispatch(ops, name, args):
    """("ok", result), or the error as plain data: ("oserror", errno, strerror, filename) or
    ("error", type name, message)."""
    try:
        return ("ok", getattr(ops, name)(*args))
    except OSError as e:
        return ("oserror", e.errno, e.strerror, e.filename)
    except Exception as e:  # every request gets a reply; the client raises it
        return ("error", type(e).__name__, str(e))


def unwrap(reply):
    """The client's side of `dispatch`: the result, or the error raised as the local type."""
    if reply[0] == "ok":
        return reply[1]
    if reply[0] == "oserror":
        raise OSError(reply[1], reply[2], reply[3])  # OSError picks FileNotFoundError & co by errno
    raise RuntimeError(f"remote {reply[1]}: {reply[2]}")


if __name__ == "__channelexec__":
    ops = Ops()
    for name, args in channel:  # noqa: F821 (execnet provides `channel`); ends when it closes
        channel.send(dispatch(ops, name, args))  # noqa: F821
