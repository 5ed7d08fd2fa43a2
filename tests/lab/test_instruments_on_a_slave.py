"""The same bench, driven as lab-instruments.ipynb drives it: master code, slave hardware. A real
agent (splitbrain.spawn) runs socat, the serial device and pyvisa-sim; this process only routes."""
import os
import shutil
import tempfile

import pytest
import splitbrain

from instruments.bench import SerialBench, visa_sim_backend


@pytest.fixture(scope="module")
def slave(tmp_path_factory):
    # A registry and client key of the test's own, never the user's ~/.config/splitbrain.
    saved = os.environ.get("SPLITBRAIN_CONFIG")
    os.environ["SPLITBRAIN_CONFIG"] = str(tmp_path_factory.mktemp("splitbrain-config"))
    spawned = splitbrain.spawn(name="lab-bench")
    yield spawned
    spawned.close()
    if saved is None:
        del os.environ["SPLITBRAIN_CONFIG"]
    else:
        os.environ["SPLITBRAIN_CONFIG"] = saved


def parent_of(pid):
    with splitbrain.local(), open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[1])


def test_socat_and_the_serial_device_run_as_children_of_the_slave(slave):
    with slave:
        worker = os.getpid()
        with SerialBench() as bench:
            assert os.path.exists(bench.port)
            assert parent_of(bench._socat.pid) == worker
            assert parent_of(bench._device.pid) == worker
    with splitbrain.local():
        assert worker != os.getpid()


def test_the_serial_device_answers_through_the_slaves_pyserial(slave):
    with slave:
        import serial
        with SerialBench() as bench:
            port = serial.Serial(bench.port, timeout=2)
            try:
                port.write(b"*IDN?\n")
                assert port.readline() == b"SPLITBRAIN,SIM-THERMO-1,SN0042,1.0\n"
                port.write(b"TEMP?\n")
                assert 22.0 <= float(port.readline()) <= 24.0
            finally:
                port.close()
            workdir = bench.workdir
        assert not os.path.exists(workdir)


def test_a_voltage_sweep_on_the_slave_brings_its_readings_home(slave):
    with slave:
        import pyvisa
        backend = visa_sim_backend()
        assert backend.endswith("/bench.yaml@sim") and backend.startswith(tempfile.gettempdir())
        rm = pyvisa.ResourceManager(backend)
        psu = rm.open_resource("TCPIP0::localhost::inst0::INSTR",
                               read_termination="\n", write_termination="\n")
        assert psu.query("*IDN?") == "SPLITBRAIN,SIM-PSU-3005,SN0001,0.6"
        readings = {}
        for volts in (0.5, 1.0, 2.5, 5.0):
            psu.write(f"VOLT {volts}")
            readings[volts] = float(psu.query("MEAS:VOLT?"))
        rm.close()
        shutil.rmtree(backend.rpartition("/")[0])
    assert readings == {0.5: 0.5, 1.0: 1.0, 2.5: 2.5, 5.0: 5.0}

