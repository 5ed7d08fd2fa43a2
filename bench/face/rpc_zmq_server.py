"""A minimal pyzmq RPC server, the peer an engineer would write by hand: one ROUTER socket with
CURVE on (tcp://127.0.0.1, a port it picks), one request = [header, *blobs] → one reply of the same
shape, dispatched by rpc_ops. The header is CBOR (never pickle); bytes of 64 KiB or more travel as
their own frames, never copied into the header.

Prints "endpoint <address> <server public key>" on stdout once bound. Stops when its parent goes
away (checked every second) or on SIGTERM. No ZAP handler: libzmq then accepts any CURVE client,
which encrypts as the agent does but skips the key check (one less hop than ours, so it flatters
the peer, not us)."""

import os
import sys

import cbor2
import zmq

import rpc_ops

BLOB = 64 << 10


def pack(values) -> list:
    """[header, *blobs]: large bytes in `values` (a list) replaced by {"blob": index}."""
    blobs, out = [], []
    for v in values:
        if isinstance(v, (bytes, bytearray, memoryview)) and len(v) >= BLOB:
            out.append({"blob": len(blobs)})
            blobs.append(v)
        else:
            out.append(v)
    return [cbor2.dumps(out), *blobs]


def unpack(frames) -> list:
    values = cbor2.loads(frames[0])
    return [frames[1 + v["blob"]] if isinstance(v, dict) and "blob" in v else v for v in values]


def main():
    context = zmq.Context()
    public, secret = zmq.curve_keypair()
    sock = context.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(f"endpoint tcp://127.0.0.1:{port} {public.decode()}", flush=True)
    parent = os.getppid()
    ops = rpc_ops.Ops()
    while os.getppid() == parent:
        if not sock.poll(1000):
            continue
        identity, *frames = sock.recv_multipart(copy=True)
        name, *args = unpack(frames)
        reply = rpc_ops.dispatch(ops, name, args)
        sock.send_multipart([identity, *pack(list(reply))], copy=False)
    sock.close()
    context.term()


if __name__ == "__main__":
    sys.exit(main())
