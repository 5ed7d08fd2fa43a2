"""A second host for link cuts: a network namespace joined to ours by a veth pair, traffic only
inside it. `cut()` takes our end of the link down (packets are dropped, no connection is reset,
as when a cable is pulled), `restore()` brings it back. Needs root and iproute2."""
import os
import shutil
import subprocess
import itertools

import pytest

_numbers = itertools.count()


def available():
    return os.geteuid() == 0 and shutil.which("ip") is not None


def require():
    if not available():
        pytest.skip("needs root and iproute2 for a network namespace as the second host")


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Namespace:
    def __init__(self, prefix="sb-cut"):
        tag = f"{os.getpid() % 10000}{next(_numbers)}"
        self.name, self.host_if, self.ns_if = f"{prefix}-{tag}", f"sbc{tag}", f"sbd{tag}"
        net = 1 + (os.getpid() * 7 + next(_numbers)) % 250
        self.host_ip, self.ns_ip = f"10.252.{net}.1", f"10.252.{net}.2"
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            _ip("netns", "exec", self.name, "ip", "link", "set", self.ns_if, "up")
            _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def wrapper(self, directory, binary):
        """An executable in *directory* that runs *binary* inside the namespace, with its arguments."""
        path = os.path.join(directory, f"in-{self.name}")
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nexec ip netns exec {self.name} {binary} "$@"\n')
        os.chmod(path, 0o755)
        return path

    def cut(self):
        _ip("link", "set", self.host_if, "down")

    def restore(self):
        _ip("link", "set", self.host_if, "up")

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)
