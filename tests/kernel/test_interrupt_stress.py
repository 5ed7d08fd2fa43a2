"""The kernel survives an interrupt at any moment of its start (issue 10, point 12): a short run of
bench/kernel/stress_interrupt.py (the full run is 200 starts: `bench/kernel/run.sh stress`)."""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
STARTS = 20  # five per window: during dynamic loading, before, during and right after the first kernel_info_reply


def test_every_start_interrupted_at_a_random_moment_runs_its_first_cell():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "kernel" / "stress_interrupt.py"),
                          "--starts", str(STARTS), "--jobs", "2", "--json"],
                         capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert run.stdout, run.stderr
    result = json.loads(run.stdout)
    assert result["starts"] == STARTS
    assert result["failed"] == 0, json.dumps(result["failures"], indent=2)
    assert run.returncode == 0, run.stderr
