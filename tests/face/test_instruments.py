"""The hardware libraries are routed: inside a slave's context `pyvisa` and `serial` are the
slave's, so instruments wired to the slave answer (pyvisa-sim and a socat pty pair stand in)."""

import re
import shutil
import subprocess

import pytest

import splitbrain


def test_a_visa_instrument_answers_through_the_slaves_pyvisa(linux_box):
    with linux_box:
        import pyvisa
        rm = pyvisa.ResourceManager("@sim")
        assert isinstance(rm, splitbrain.RemoteObject)
        assert "ASRL1::INSTR" in rm.list_resources()
        instrument = rm.open_resource("ASRL1::INSTR", read_termination="\n", write_termination="\r\n")
        assert instrument.query("?IDN") == "LSG Serial #1234"
        instrument.close()
        rm.close()


@pytest.fixture
def pty_pair():
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    with splitbrain.local():
        process = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
                                   stderr=subprocess.PIPE, text=True)
    ptys = []
    while len(ptys) < 2:
        line = process.stderr.readline()
        if not line:
            pytest.fail("socat exited before opening two ptys")
        found = re.search(r"PTY is (\S+)", line)
        if found:
            ptys.append(found.group(1))
    yield ptys
    process.terminate()
    process.wait(5)


def test_a_serial_port_is_opened_and_read_by_the_slaves_pyserial(linux_box, pty_pair):
    instrument_side, slave_side = pty_pair
    import serial
    with serial.Serial(instrument_side, timeout=2) as instrument:  # local: the "instrument"
        assert not isinstance(instrument, splitbrain.RemoteObject)
        with linux_box:
            port = serial.Serial(slave_side, timeout=2)
        assert repr(port).startswith("<remote linux-box: Serial<id=")
        instrument.write(b"T=21.5\n")
        assert port.readline() == b"T=21.5\n"
        port.write(b"MEAS?\n")
        assert instrument.readline() == b"MEAS?\n"
        port.close()
