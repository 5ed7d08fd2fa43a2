"""The kernelspec: configured into the build tree for tests, installed with the right argv."""
import json
import os
import pathlib
import shutil
import struct
import subprocess

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
    assert spec["interrupt_mode"] == "signal"
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


def test_a_kernel_installed_into_a_venv_runs_that_venvs_python(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    # IPython and friends come from the project's venv (Debian's system site lacks them).
    project_site = pathlib.Path(os.environ.get("SPLITBRAIN_VENV", ".venv")) / "lib/python3.11/site-packages"
    (venv / "lib/python3.11/site-packages/project.pth").write_text(f"{project_site.resolve()}\n")
    subprocess.run([shutil.which("cmake"), "--install", str(BUILD_DIR), "--component", "kernel",
                    "--prefix", str(venv)], check=True, capture_output=True, timeout=60)
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
