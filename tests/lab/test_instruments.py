"""The simulated lab bench of notebooks/instruments, proven locally: a pyvisa-sim SCPI power
supply and a serial thermometer behind a real socat pty pair, read with real pyserial."""
import os
import subprocess
import sys
import time

import pytest
from deadline import wait_until
import pyvisa
import serial

from conftest import NOTEBOOKS
from instruments.bench import BenchError, SerialBench

BENCH_YAML = NOTEBOOKS / "instruments" / "bench.yaml"
PSU = "TCPIP0::localhost::inst0::INSTR"




@pytest.fixture
def psu():
    rm = pyvisa.ResourceManager(f"{BENCH_YAML}@sim")
    instrument = rm.open_resource(PSU, read_termination="\n", write_termination="\n", timeout=500)
    yield instrument
    instrument.close()
    rm.close()


@pytest.fixture
def bench():
    with SerialBench() as running:
        yield running


@pytest.fixture
def port(bench):
    with serial.Serial(bench.port, timeout=2) as opened:
        yield opened


def ask(port, command):
    port.write(command)
    return port.readline()


# --- the pyvisa-sim power supply

def test_the_bench_yaml_lists_the_power_supply_on_tcpip_and_serial():
    rm = pyvisa.ResourceManager(f"{BENCH_YAML}@sim")
    assert set(rm.list_resources()) == {PSU, "ASRL1::INSTR"}


def test_the_power_supply_identifies_itself(psu):
    assert psu.query("*IDN?") == "SPLITBRAIN,SIM-PSU-3005,SN0001,0.6"


def test_a_reset_is_accepted_without_a_reply(psu):
    psu.write("*RST")
    assert psu.query("SYST:ERR?") == '+0,"No error"'


def test_a_voltage_sweep_measures_back_every_setpoint(psu):
    setpoints = [0.0, 0.5, 1.5, 3.3, 5.0, 12.0, 30.0]
    measured = []
    for volts in setpoints:
        psu.write(f"VOLT {volts}")
        measured.append(float(psu.query("MEAS:VOLT?")))
    assert measured == setpoints
    assert psu.query("SYST:ERR?") == '+0,"No error"'


@pytest.mark.parametrize("value", ["-1", "30.5", "abc"])
def test_an_out_of_range_voltage_is_refused_and_queued_as_a_command_error(psu, value):
    psu.write("VOLT 2.5")
    psu.write(f"VOLT {value}")
    assert float(psu.query("MEAS:VOLT?")) == 2.5
    assert psu.query("SYST:ERR?") == '-100,"Command error"'
    assert psu.query("SYST:ERR?") == '+0,"No error"'


def test_output_and_current_limit_read_back_what_was_set(psu):
    psu.write("OUTP 1")
    psu.write("CURR 0.25")
    assert psu.query("OUTP?") == "1"
    assert psu.query("CURR?") == "0.250"


def test_an_unknown_query_times_out_like_a_real_scpi_instrument(psu):
    with pytest.raises(pyvisa.errors.VisaIOError):
        psu.query("FOO?")
    assert psu.query("SYST:ERR?") == '-100,"Command error"'


def test_the_serial_resource_speaks_with_crlf_queries():
    rm = pyvisa.ResourceManager(f"{BENCH_YAML}@sim")
    unit = rm.open_resource("ASRL1::INSTR", read_termination="\n", write_termination="\r\n")
    assert unit.query("*IDN?") == "SPLITBRAIN,SIM-PSU-3005,SN0001,0.6"
    rm.close()


# --- the serial thermometer behind socat

def test_a_started_bench_gives_a_port_that_exists(bench):
    assert os.path.exists(bench.port)
    assert os.path.realpath(bench.port).startswith("/dev/pts/")


def test_the_serial_device_identifies_itself(port):
    assert ask(port, b"*IDN?\n") == b"SPLITBRAIN,SIM-THERMO-1,SN0042,1.0\n"


def test_the_serial_device_reads_a_room_temperature_with_sensor_noise(port):
    readings = []
    for _ in range(10):
        reply = ask(port, b"TEMP?\n")
        assert reply.endswith(b"\n")
        readings.append(float(reply))
    assert all(22.0 <= t <= 24.0 for t in readings)
    assert len(set(readings)) > 1


def test_an_endless_line_is_cut_and_answered_err_not_buffered_for_ever(port):
    port.write(b"X" * 1000 + b"\n*IDN?\n")
    replies = [port.readline() for _ in range(2)]
    while not replies[-1].startswith(b"SPLITBRAIN,"):
        assert replies[-1] == b"ERR\n", replies
        assert len(replies) <= 1000 // 256 + 2, replies
        replies.append(port.readline())
    assert set(replies[:-1]) == {b"ERR\n"}


def test_an_unknown_command_answers_err(port):
    assert ask(port, b"VOLT 3\n") == b"ERR\n"


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_each_line_ending_ends_a_command(port, ending):
    assert ask(port, b"*idn?" + ending) == b"SPLITBRAIN,SIM-THERMO-1,SN0042,1.0\n"


def test_commands_sent_together_get_their_answers_in_order(port):
    port.write(b"*IDN?\r\nNOPE\r\nTEMP?\r\n")
    assert port.readline().startswith(b"SPLITBRAIN,")
    assert port.readline() == b"ERR\n"
    assert float(port.readline()) > 0


def test_the_bench_takes_its_ident_from_the_caller():
    with SerialBench(ident="ACME,T-2,7,0") as bench, serial.Serial(bench.port, timeout=2) as port:
        assert ask(port, b"*IDN?\n") == b"ACME,T-2,7,0\n"


def test_stopping_the_bench_ends_both_processes_and_removes_its_files():
    bench = SerialBench().start()
    socat, device, workdir = bench._socat, bench._device, bench.workdir
    started = time.monotonic()
    bench.stop()
    assert time.monotonic() - started < 2
    assert socat.poll() is not None and device.poll() is not None
    assert not os.path.exists(workdir)
    assert bench.port is None
    bench.stop()


def test_a_device_that_cannot_start_is_a_clear_error_and_leaves_nothing_behind():
    bench = SerialBench(python="/bin/false", start_timeout=5)
    with pytest.raises(BenchError, match=r"^\[splitbrain\.bench_failed\] waiting for serial_device"):
        bench.start()
    assert bench.workdir is None and bench._socat is None and bench._device is None


def test_a_bench_cannot_be_started_twice(bench):
    with pytest.raises(BenchError, match=r"^\[splitbrain\.bench_started\]"):
        bench.start()


def test_the_serial_device_exits_by_itself_after_its_lifetime(bench):
    bench._device.terminate()
    bench._device.wait()
    ready = bench.workdir + "/ready2"
    script = str(NOTEBOOKS / "instruments" / "serial_device.py")
    device = subprocess.Popen([sys.executable, script, bench.workdir + "/device",
                               "--lifetime", "0.5", "--ready-file", ready])
    try:
        wait_until(lambda: os.path.exists(ready), 10, "the device opening its port")
        wait_until(lambda: device.poll() is not None, 5, "the device ending after its lifetime")
        assert device.returncode == 0
    finally:
        device.kill()
        device.wait()
