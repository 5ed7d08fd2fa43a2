"""The simulated lab bench on whichever machine is active: a serial thermometer (socat's pty pair
plus serial_device.py) and the pyvisa-sim power supply of bench.yaml.

    from instruments.bench import SerialBench, visa_sim_backend
    with SerialBench() as bench:                  # inside %%slave NAME: on NAME
        port = serial.Serial(bench.port, timeout=2)
        port.write(b"*IDN?\\n"); port.readline()
    rm = pyvisa.ResourceManager(visa_sim_backend())   # the simulated PSU of bench.yaml, there too

Everything that touches the machine goes through the `os`, `subprocess`, `tempfile`, `shutil`
modules and `open`, looked up when called, so under splitbrain they act on the active slave. The
device program and the YAML are copied there, so the slave needs socat, a Python with pyserial
(and pyvisa-sim for `visa_sim_backend`), but no copy of this folder. `SerialBench(python=...)`
defaults to this interpreter's path, which is right for the demo agents on this machine; give the
slave's own for a real one.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from splitbrain._errors import error

_HERE = __file__.rpartition("/")[0]
# Read once at import, through the import system's loader: it always reads the master's files,
# whatever machine `open` is routed to when this module is imported.
_DEVICE_SOURCE = __loader__.get_data(_HERE + "/serial_device.py")
_VISA_SIM_YAML = __loader__.get_data(_HERE + "/bench.yaml")


def visa_sim_backend():
    """pyvisa's library argument for the simulated power supply of bench.yaml on the active machine.

    The YAML is copied to a new temporary folder there: `pyvisa.ResourceManager(visa_sim_backend())`.
    """
    path = tempfile.mkdtemp(prefix="splitbrain-visa-") + "/bench.yaml"
    with open(path, "wb") as f:
        f.write(_VISA_SIM_YAML)
    return path + "@sim"


class BenchError(RuntimeError):
    pass


class SerialBench:
    """socat's two linked ptys and the device answering on one of them; `port` is the other.

    Start with `start()` or `with`, stop with `stop()` (idempotent): the device, then socat, are
    asked to terminate, killed after `stop_timeout` seconds, and the work directory is removed.
    """

    def __init__(self, python=None, ident=None, start_timeout=10.0, stop_timeout=5.0):
        self.python = python or sys.executable
        self.ident = ident
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.workdir = None
        self.port = None
        self._socat = None
        self._device = None

    def start(self):
        if self.workdir is not None:
            raise error("bench_started", "this SerialBench is already running", BenchError)
        self.workdir = tempfile.mkdtemp(prefix="splitbrain-serial-")
        try:
            self._start_in(self.workdir)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for name in ("_device", "_socat"):
            process = getattr(self, name)
            if process is not None:
                self._end(process)
                setattr(self, name, None)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self.port = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _start_in(self, workdir):
        device_end = workdir + "/device"
        port = workdir + "/port"
        script = workdir + "/serial_device.py"
        ready = workdir + "/ready"
        with open(script, "wb") as f:
            f.write(_DEVICE_SOURCE)

        self._socat = subprocess.Popen(
            ["socat", "-d", "-d", f"pty,raw,echo=0,link={device_end}", f"pty,raw,echo=0,link={port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_for("socat's pty links", self._socat, device_end, port)

        command = [self.python, script, device_end, "--ready-file", ready]
        if self.ident:
            command += ["--ident", self.ident]
        self._device = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self._wait_for("serial_device.py to open its pty", self._device, ready)
        self.port = port

    def _wait_for(self, what, process, *paths):
        deadline = time.monotonic() + self.start_timeout
        while not all(os.path.exists(p) for p in paths):
            if process.poll() is not None:
                detail = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
                raise error("bench_failed", f"waiting for {what}: {process.args[0]} exited with status "
                                            f"{process.returncode}" + (f": {detail}" if detail else ""),
                            BenchError)
            if time.monotonic() > deadline:
                raise error("bench_failed", f"{what} did not happen within {self.start_timeout:g} s", BenchError)
            time.sleep(0.01)

    def _end(self, process):
        if process.poll() is None:
            process.terminate()
            deadline = time.monotonic() + self.stop_timeout
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if process.poll() is None:
                process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()
