"""The explicit-RPC peers of bench/face, each a `call(name, *args)` over one connection with a
counter of round trips: execnet (a popen gateway, one dispatcher channel, one send and one receive
per operation) and a pyzmq DEALER → ROUTER RPC with CURVE on (rpc_zmq_server.py)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import rpc_ops

HERE = pathlib.Path(__file__).resolve().parent


class ExecnetPeer:
    def __init__(self):
        import execnet
        self.execnet = execnet
        self.requests = 0
        self.group = execnet.Group()
        self.gateway, self.channel = self.open()

    def open(self):
        gateway = self.group.makegateway(f"popen//python={sys.executable}")
        channel = gateway.remote_exec(rpc_ops)
        return gateway, channel

    def call(self, name, *args):
        self.requests += 1
        self.channel.send((name, args))
        return rpc_ops.unwrap(self.channel.receive(timeout=120))

    def connect_and_call(self):
        """W8: a new gateway (it starts an interpreter) to the first call's result."""
        gateway, channel = self.open()
        channel.send(("getcwd", ()))
        rpc_ops.unwrap(channel.receive(timeout=60))
        channel.close()
        gateway.exit()

    def close(self):
        self.channel.close()
        self.group.terminate(timeout=10)


class ZmqPeer:
    def __init__(self):
        import zmq

        import rpc_zmq_server
        self.zmq = zmq
        self.codec = rpc_zmq_server
        self.requests = 0
        self.proc = subprocess.Popen([sys.executable, str(HERE / "rpc_zmq_server.py")], stdout=subprocess.PIPE,
                                     text=True, cwd=HERE)
        line = self.proc.stdout.readline().split()  # bounded: the server prints or exits at once
        if len(line) != 3 or line[0] != "endpoint":
            self.close()
            raise RuntimeError(f"rpc_zmq_server.py did not report its endpoint: {line}")
        self.endpoint, self.server_key = line[1], line[2].encode()
        self.context = zmq.Context()
        self.client_public, self.client_secret = zmq.curve_keypair()
        self.sock = self.open()

    def open(self):
        sock = self.context.socket(self.zmq.DEALER)
        sock.curve_serverkey = self.server_key
        sock.curve_publickey = self.client_public
        sock.curve_secretkey = self.client_secret
        sock.linger = 0
        sock.connect(self.endpoint)
        return sock

    def exchange(self, sock, name, args):
        sock.send_multipart(self.codec.pack([name, *args]), copy=False)
        if not sock.poll(120_000):
            raise TimeoutError(f"rpc_zmq_server.py did not answer {name} within 120 s")
        return rpc_ops.unwrap(self.codec.unpack(sock.recv_multipart(copy=True)))

    def call(self, name, *args):
        self.requests += 1
        return self.exchange(self.sock, name, args)

    def connect_and_call(self):
        """W8: a new CURVE connection (handshake included) to the first call's result."""
        sock = self.open()
        self.exchange(sock, "getcwd", ())
        sock.close()

    def close(self):
        if getattr(self, "sock", None) is not None:
            self.sock.close()
            self.context.term()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
