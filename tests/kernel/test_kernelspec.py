"""The kernelspec: configured into the build tree for tests, installed with the right argv."""
import json
import os
import pathlib
import shutil
import struct
import subprocess

import pytest
from jupyter_client.kernelspec import KernelSpecManager

BUILD_DIR = pathlib.Path(os.environ["SPLITBRAIN_BUILD_DIR"])


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_spec_dir(spec_dir, kernel):
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (splitbrain)"
    assert spec["language"] == "python"
    assert spec["interrupt_mode"] == "message"
    assert spec["argv"] == [str(kernel), "-f", "{connection_file}"]
    assert os.access(kernel, os.X_OK)
    assert png_size(spec_dir / "logo-32x32.png") == (32, 32)
    assert png_size(spec_dir / "logo-64x64.png") == (64, 64)


def test_the_build_tree_kernelspec_runs_the_build_trees_kernel():
    check_spec_dir(BUILD_DIR / "share/jupyter/kernels/splitbrain", BUILD_DIR / "kernel/splitbrain-kernel")


def test_installing_puts_the_prefixs_kernel_in_the_kernelspec_and_jupyter_finds_it(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run([shutil.which("cmake"), "--install", str(BUILD_DIR), "--component", "kernel",
                    "--prefix", str(prefix)], check=True, capture_output=True, timeout=60)
    spec_dir = prefix / "share/jupyter/kernels/splitbrain"
    check_spec_dir(spec_dir, prefix / "bin/splitbrain-kernel")

    specs = KernelSpecManager(kernel_dirs=[str(prefix / "share/jupyter/kernels")]).find_kernel_specs()
    assert specs["splitbrain"] == str(spec_dir)


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory):
    """A venv made as the README's set-up makes .venv, with the kernel component installed into it."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    # IPython, jupyter_core and friends come from the project's venv (Debian's system site lacks them).
    project_site = pathlib.Path(os.environ.get("SPLITBRAIN_VENV", ".venv")) / "lib/python3.11/site-packages"
    (venv / "lib/python3.11/site-packages/project.pth").write_text(f"{project_site.resolve()}\n")
    # The venv's own `jupyter` commands, as pip would write them: the project venv's scripts, run by
    # this venv's python.
    project_bin = pathlib.Path(os.environ.get("SPLITBRAIN_VENV", ".venv")) / "bin"
    for command in ("jupyter", "jupyter-kernelspec"):
        source = (project_bin / command).read_text().split("\n", 1)[1]
        script = venv / "bin" / command
        script.write_text(f"#!{venv}/bin/python\n{source}")
        script.chmod(0o755)
    subprocess.run([shutil.which("cmake"), "--install", str(BUILD_DIR), "--component", "kernel",
                    "--prefix", str(venv)], check=True, capture_output=True, timeout=60)
    return venv


def test_jupyter_kernelspec_list_of_the_venv_shows_the_installed_kernel(installed_venv, tmp_path):
    """Issue 2, point 2, as a user sees it: nothing tells Jupyter where to look but the venv itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
    env["HOME"] = str(tmp_path)  # no kernelspec of the user's own shadows the venv's
    listing = subprocess.run([str(installed_venv / "bin/jupyter"), "kernelspec", "list", "--json"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    specs = json.loads(listing.stdout)["kernelspecs"]
    assert "splitbrain" in specs, f"jupyter kernelspec list shows {sorted(specs)}"
    spec = specs["splitbrain"]
    assert spec["resource_dir"] == str(installed_venv / "share/jupyter/kernels/splitbrain")
    assert spec["spec"]["argv"][0] == str(installed_venv / "bin/splitbrain-kernel")
    assert spec["spec"]["display_name"] == "Python 3 (splitbrain)"


def test_a_kernel_installed_into_a_venv_runs_that_venvs_python(installed_venv):
    venv = installed_venv
    from jupyter_client import KernelManager

    ksm = KernelSpecManager(kernel_dirs=[str(venv / "share/jupyter/kernels")])
    km = KernelManager(kernel_name="splitbrain", kernel_spec_manager=ksm)
    km.start_kernel()
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        outputs = []
        kc.execute_interactive("import sys; print(sys.executable, sys.prefix)", timeout=30,
                               output_hook=lambda m: outputs.append(m["content"].get("text")))
        assert f"{venv}/bin/python {venv}\n" in outputs
        kc.stop_channels()
    finally:
        km.shutdown_kernel()
