"""Every notebook in notebooks/ runs headless (`jupyter nbconvert --execute`) with the splitbrain
kernel against two real demo agents, exactly as `make lab` starts them, and keeps its outputs."""

import ast
import glob
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
sys.path.insert(0, os.path.join(ROOT, "scripts"))


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    config = tmp_path_factory.mktemp("config")
    state = tmp_path_factory.mktemp("demo")
    # demo_agents registers the agents in the registry SPLITBRAIN_CONFIG names; the test's own,
    # and only for this module's extent.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPLITBRAIN_CONFIG", str(config))
        from demo_agents import demo_agents
        with demo_agents(["bench-a", "bench-b"], str(state)):
            yield dict(os.environ)


def _execute(path, env, out_dir):
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "jupyter"), "nbconvert", "--to", "notebook",
         "--execute", path, "--output-dir", str(out_dir), "--ExecutePreprocessor.timeout=120",
         "--ExecutePreprocessor.kernel_name=splitbrain"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"nbconvert failed:\n{done.stderr[-4000:]}"
    with open(os.path.join(out_dir, os.path.basename(path)), encoding="utf-8") as f:
        return json.load(f)


def _text(cell):
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append("".join(out["text"]) if isinstance(out["text"], list) else out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            data = out["data"].get("text/plain", "")
            parts.append("".join(data) if isinstance(data, list) else data)
        elif out["output_type"] == "error":
            parts.append("\n".join(out["traceback"]))
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_headless_and_fails_only_where_tagged(path, demo_env, tmp_path):
    nb = _execute(path, demo_env, tmp_path)
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code_cells and all(c.get("execution_count") for c in code_cells), "a cell did not run"
    for cell in code_cells:
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        expected = "raises-exception" in cell.get("metadata", {}).get("tags", [])
        assert bool(errors) == expected, (
            f"cell {''.join(cell['source'])[:80]!r}: "
            f"{'expected an error' if expected else 'unexpected error'}:\n{_text(cell)[-2000:]}")


def _cell(nb, first_line):
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith(first_line):
            return cell
    raise AssertionError(f"no cell starts with {first_line!r}")


def test_quickstart_keeps_live_remote_output_and_marks_remote_tracebacks(demo_env, tmp_path):
    nb = _execute(os.path.join(ROOT, "notebooks", "quickstart.ipynb"), demo_env, tmp_path)
    ticks = _text(_cell(nb, '%%slave bench-a\nsubprocess.run(["sh"'))
    assert ticks.index("tick 1") < ticks.index("tick 2") < ticks.index("tick 3") < ticks.index("done on")
    failed = _cell(nb, '%%slave bench-a\nos.listdir("/no/such/dir")')
    error = [o for o in failed["outputs"] if o["output_type"] == "error"][0]
    assert error["ename"] == "FileNotFoundError"
    assert "on bench-a" in "\n".join(error["traceback"])


@pytest.fixture(scope="module")
def multi_slave(demo_env, tmp_path_factory):
    return _execute(os.path.join(ROOT, "notebooks", "multi-slave.ipynb"), demo_env,
                    tmp_path_factory.mktemp("multi-slave"))


def test_fan_out_keeps_each_slaves_output_in_its_own_block(multi_slave):
    text = _text(_cell(multi_slave, "%%slave bench-a bench-b -o where"))
    parts = re.split(r"^\[([^\]\n]+)\] (?:done|failed)[^\n]*\n", text, flags=re.M)
    blocks = dict(zip(parts[1::2], parts[2::2]))
    where = ast.literal_eval(_text(_cell(multi_slave, "assert set(where)")))
    assert sorted(blocks) == ["bench-a", "bench-b"]
    for name, other in (("bench-a", "bench-b"), ("bench-b", "bench-a")):
        pid, cwd = where[name]
        assert f"working in {cwd} as pid {pid}\n" in blocks[name]
        assert f"as pid {where[other][0]}" not in blocks[name]


def test_fan_out_reports_the_failing_slave_and_still_shows_the_other(multi_slave):
    cell = _cell(multi_slave, "%%slave bench-a bench-b -o contents")
    text = _text(cell)
    assert "[bench-a] done" in text and "hello from a" in text
    assert "[bench-b] failed" in text
    error = [o for o in cell["outputs"] if o["output_type"] == "error"][0]
    assert "[splitbrain.fan_out_failed] 1 of 2 slaves failed: bench-b" in error["evalue"]


def test_shared_bench_refuses_the_second_kernel_with_the_holders_name_until_it_releases(demo_env, tmp_path):
    """issue 13 point 5: one kernel leases the PSU, a second kernel (another client key) is refused
    naming the holder, and succeeds once the first releases."""
    nb = _execute(os.path.join(ROOT, "notebooks", "shared-bench.ipynb"), demo_env, tmp_path)
    refusal = _text(_cell(nb, "from jupyter_client.manager import start_new_kernel"))
    assert re.search(r"bob refused: \[splitbrain\.leased\] \S+:TCPIP0::localhost::inst0::INSTR is leased by "
                     r"alice@lab-pc \(since \d\d:\d\d, until \d\d:\d\d\)", refusal), refusal
    assert "bob: SPLITBRAIN,SIM-PSU-3005" in _text(_cell(nb, "lease.release()"))
