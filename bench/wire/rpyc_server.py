"""What `rpyc_classic --host 127.0.0.1 -p 0` runs (a ThreadedServer of SlaveService), with TCP_NODELAY
on accepted sockets. Stock rpyc_classic leaves Nagle on: an `os.stat()` through it then stalls 40 ms
on delayed ACKs, and the benchmarks would measure that instead of RPyC. Prints its port."""

import socket

from rpyc.core import SlaveService
from rpyc.utils.server import ThreadedServer


class NoDelayServer(ThreadedServer):
    def _accept_method(self, sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super()._accept_method(sock)


if __name__ == "__main__":
    server = NoDelayServer(SlaveService, hostname="127.0.0.1", port=0, reuse_addr=True)
    print(f"server started on [127.0.0.1]:{server.port}", flush=True)
    server.start()
