"""notebooks/hello.ipynb runs headless with nbconvert on this kernel (issue 2, point 7)."""
import os
import pathlib
import subprocess
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_hello_notebook_executes_headless_with_the_expected_outputs(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=120", "--output-dir", str(tmp_path), "--output", "hello.out.ipynb",
         str(ROOT / "notebooks" / "hello.ipynb")],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    nb = nbformat.read(tmp_path / "hello.out.ipynb", as_version=4)
    assert nb.metadata.kernelspec.name == "splitbrain"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == [1, 2, 3, 4, 5]

    printed, displayed, result, executable, pyvisa = (cell.outputs for cell in code)
    assert printed == [nbformat.NotebookNode(name="stdout", output_type="stream", text="hello from splitbrain\n")]
    assert displayed[0].output_type == "display_data"
    assert displayed[0].data["text/markdown"] == "**displayed** by the kernel"
    assert result[0].output_type == "execute_result"
    assert result[0].data["text/plain"] == "42"
    venv_python = os.path.join(os.environ.get("SPLITBRAIN_VENV", str(ROOT / ".venv")), "bin", "python")
    assert executable[0].data["text/plain"] == repr(venv_python)
    assert pyvisa[0].text.startswith("pyvisa 1.") and pyvisa[0].text.endswith(" on Python 3 11\n")
    # nothing written into the source tree
    assert not (ROOT / "notebooks" / "hello.out.ipynb").exists()
