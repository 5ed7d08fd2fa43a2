"""Issue 4 point 2: the seed's sketch runs against two spawned agents, windows-box and linux-box."""

from conftest import run_python

SKETCH = """
import splitbrain
slave_win = splitbrain.spawn("windows-box")
slave_lin = splitbrain.spawn("linux-box")

# local `subprocess` module
from subprocess import Popen
local_popen = Popen

with slave_win:
    # this is windows-box's `Popen`
    from subprocess import Popen
    proc = Popen(["/bin/echo", "listing on windows-box"])
    proc.wait()
    win_popen, win_proc = Popen, proc

with slave_lin:
    # this is linux-box's `Popen`
    from subprocess import Popen
    proc = Popen("/bin/ls", cwd="/")
    out, err = proc.communicate()
    lin_popen = Popen

import subprocess, sys
print("local Popen stays local:", subprocess.Popen is local_popen)
print("windows-box returncode:", win_proc.returncode, repr(win_proc).startswith("<remote windows-box:"))
print("slave Popens are not the local one:", win_popen is not local_popen and lin_popen is not local_popen)
sys.stdout.flush()
"""


def test_the_seed_sketch_prints_remote_output_and_leaves_the_local_popen_local():
    done = run_python(SKETCH)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # SHALL: what the remote child processes write appears on the local stdout
    assert "listing on windows-box" in lines
    assert "bin" in lines and "usr" in lines  # /bin/ls on linux-box, run in /
    assert "local Popen stays local: True" in lines
    assert "windows-box returncode: 0 True" in lines
    assert "slave Popens are not the local one: True" in lines
    assert lines.index("listing on windows-box") < lines.index("bin")
