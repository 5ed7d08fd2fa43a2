"""A serial thermometer: answers line commands on one end of a pseudo-terminal pair.

    python serial_device.py PORT [--ready-file PATH] [--lifetime SECONDS] [--ident TEXT] [--seed N]

PORT is one end of a `socat` pty pair (bench.SerialBench starts socat and this program); a
notebook opens the other end with pyserial. One command per line (ended by CR, LF or CR LF), one
answer per line, ended by LF:

    *IDN?          the identification string (--ident); commands are case-insensitive
    TEMP?          the temperature in degrees Celsius, two decimals, e.g. 23.41: a room drifting
                   23 ± 0.8 °C over a minute, plus sensor noise (±0.1, reproducible with --seed)
    anything else  ERR

Once PORT is open, it creates --ready-file, so whoever started it knows when to talk. It is bounded:
it exits on SIGTERM or SIGINT, when the pty pair goes away, and after --lifetime seconds
(default 3600) at the latest, so a forgotten bench never outlives its session.
"""
import argparse
import math
import random
import signal
import sys
import time

import serial

IDENT = "SPLITBRAIN,SIM-THERMO-1,SN0042,1.0"
MAX_LINE = 256


def temperature(elapsed, noise):
    room = 23.0 + 0.8 * math.sin(2 * math.pi * elapsed / 60.0)
    return room + max(-0.1, min(0.1, noise.gauss(0.0, 0.04)))


def answer(command, elapsed, ident, noise):
    if command == "*IDN?":
        return ident
    if command == "TEMP?":
        return f"{temperature(elapsed, noise):.2f}"
    return "ERR"


def serve(port, lifetime, ident, ready_file=None, seed=None):
    noise = random.Random(seed)
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))

    started = time.monotonic()
    with serial.Serial(port, baudrate=115200, timeout=0.1) as line:
        if ready_file:
            open(ready_file, "w").close()
        pending = b""
        while not stopping and time.monotonic() - started < lifetime:
            try:
                pending += line.read(max(1, line.in_waiting))
            except serial.SerialException:
                return  # socat is gone: nobody is left to answer
            *complete, pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            if len(pending) > MAX_LINE:
                complete.append(pending)
                pending = b""
            for raw in complete:
                command = raw.decode("ascii", "replace").strip().upper()
                if command:
                    reply = answer(command, time.monotonic() - started, ident, noise)
                    line.write(reply.encode("ascii") + b"\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", help="the pty this device listens on")
    parser.add_argument("--ready-file", help="created once the port is open")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="seconds before it exits")
    parser.add_argument("--ident", default=IDENT, help="the answer to *IDN?")
    parser.add_argument("--seed", type=int, help="seed of the sensor noise")
    args = parser.parse_args(argv)
    serve(args.port, args.lifetime, args.ident, args.ready_file, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
