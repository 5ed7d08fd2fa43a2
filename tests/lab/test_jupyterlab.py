"""JupyterLab in a real browser: the venv's JupyterLab on 127.0.0.1 serving a copy of notebooks/,
Debian's Chromium driven by Playwright, the splitbrain kernel found through JUPYTER_PATH (the build
tree's kernelspec). A cell runs and its output shows in the page; the toolbar's stop button
interrupts a sleeping cell and the kernel lives on; screenshots land in
$SPLITBRAIN_BUILD_DIR/screenshots/."""
import json
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import time
import urllib.request

import pytest

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"  # Debian's Chromium only, never a download
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from conftest import NOTEBOOKS

VENV = pathlib.Path(os.environ.get("SPLITBRAIN_VENV", NOTEBOOKS.parent / ".venv"))
BUILD_DIR = pathlib.Path(os.environ.get("SPLITBRAIN_BUILD_DIR", NOTEBOOKS.parent / "build"))
KERNEL = os.environ.get("SPLITBRAIN_LAB_KERNEL", "splitbrain")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SERVER_START_TIMEOUT = 60
UI_TIMEOUT_MS = 30_000
INTERRUPT_TIMEOUT_MS = 5_000
EXECUTED_PROMPT = re.compile(r"^\[\d+\]:$")

# A lab with no news, no update check and no remembered workspace: nothing pops over the notebook.
QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


def wait_until(condition, timeout, what, diagnose=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout} s{diagnose()}")
        time.sleep(0.05)


def notebook(cells, kernel=KERNEL):
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "execution_count": None,
                   "outputs": [], "source": source} for i, source in enumerate(cells)],
    }


class Lab:
    """A running `jupyter lab`: its base URL, token, root folder and log."""

    def __init__(self, workdir):
        self.root = workdir / "root"
        self.token = secrets.token_hex(16)
        self.log_path = workdir / "jupyter-lab.log"
        runtime = workdir / "runtime"
        settings = workdir / "settings"
        for name, value in QUIET_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = dict(os.environ,
                   JUPYTER_RUNTIME_DIR=str(runtime),
                   JUPYTER_CONFIG_DIR=str(workdir / "config"),
                   JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(workdir / "workspaces"))
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(VENV / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", "--port=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--ServerApp.open_browser=False", "--LabApp.news_url=None",
             "--LabApp.extension_manager=readonly"]
            + (["--allow-root"] if os.geteuid() == 0 else []),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        server_info = runtime / f"jpserver-{self.process.pid}.json"
        info = wait_until(lambda: self._exited() or (server_info.exists() and self._read(server_info)),
                          SERVER_START_TIMEOUT, "JupyterLab writing its server info", self.tail)
        self.url = info["url"].rstrip("/")
        wait_until(lambda: self._exited() or self._answers(), SERVER_START_TIMEOUT,
                   "JupyterLab answering /api/status", self.tail)

    def _exited(self):
        if self.process.poll() is not None:
            pytest.fail(f"jupyter lab exited with status {self.process.returncode}{self.tail()}")

    @staticmethod
    def _read(path):
        try:
            return json.loads(path.read_text())
        except ValueError:
            return None  # caught half-written

    def _answers(self):
        try:
            with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self):
        self.log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()[-40:]
        return "\n--- jupyter lab log (tail) ---\n" + "\n".join(lines)

    def page_url(self, path):
        return f"{self.url}/lab/tree/{path}?token={self.token}&reset"

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lab")
    shutil.copytree(NOTEBOOKS, workdir / "root", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    running = Lab(workdir)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots():
    folder = BUILD_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class NotebookPage:
    """One notebook open in JupyterLab, driven as a user would: click a cell, Shift+Enter."""

    def __init__(self, page):
        self.page = page
        self.cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

    def wait_for_kernel(self, status):
        # The toolbar's execution indicator carries the kernel's status.
        expect(self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator"
                                 f"[data-status='{status}']")).to_have_count(1, timeout=UI_TIMEOUT_MS)

    def run(self, index):
        cell = self.cells.nth(index)
        cell.locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Shift+Enter")
        return cell

    def prompt(self, index):
        return self.cells.nth(index).locator(".jp-InputArea-prompt")

    def output(self, index):
        return self.cells.nth(index).locator(".jp-OutputArea")

    def wait_until_done(self, index, timeout=UI_TIMEOUT_MS):
        expect(self.prompt(index)).to_have_text(EXECUTED_PROMPT, timeout=timeout)

    def kernel_name(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar .jp-KernelName")

    def interrupt(self):
        self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar "
                          "[data-command='notebook:interrupt-kernel']").click()


@pytest.fixture(scope="module")
def kernelspec():
    try:
        return KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(f"no kernelspec {KERNEL!r} on JUPYTER_PATH={os.environ.get('JUPYTER_PATH')!r}; "
                    "build the kernel (the build tree's share/jupyter holds its kernelspec)")


def open_notebook(lab, browser, path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(lab.page_url(path))
    return NotebookPage(page)


@pytest.fixture(scope="module")
def scratch(lab, browser, kernelspec):
    (lab.root / "scratch.ipynb").write_text(json.dumps(notebook([
        "answer = 6 * 7\nprint('answer', answer)",
        "import time\ntime.sleep(60)",
        "print('still', answer, 'after the interrupt')",
    ])))
    opened = open_notebook(lab, browser, "scratch.ipynb")
    expect(opened.cells).to_have_count(3, timeout=UI_TIMEOUT_MS)
    opened.wait_for_kernel("idle")
    yield opened
    opened.page.close()


def test_the_notebook_opens_with_the_kernel_its_metadata_names(scratch, kernelspec):
    expect(scratch.kernel_name()).to_have_text(kernelspec.display_name, timeout=UI_TIMEOUT_MS)


def test_a_cell_runs_in_the_kernel_and_its_output_shows_in_the_page(scratch):
    scratch.run(0)
    scratch.wait_until_done(0)
    expect(scratch.output(0)).to_have_text("answer 42", timeout=UI_TIMEOUT_MS)


def test_the_toolbar_stop_button_interrupts_a_sleeping_cell_within_seconds(scratch, screenshots):
    scratch.run(1)
    expect(scratch.prompt(1)).to_have_text("[*]:", timeout=UI_TIMEOUT_MS)
    scratch.wait_for_kernel("busy")
    started = time.monotonic()
    scratch.interrupt()
    expect(scratch.output(1)).to_contain_text("KeyboardInterrupt", timeout=INTERRUPT_TIMEOUT_MS)
    scratch.wait_until_done(1, timeout=INTERRUPT_TIMEOUT_MS)
    elapsed = time.monotonic() - started
    print(f"interrupt: KeyboardInterrupt shown {elapsed:.2f} s after the click")
    scratch.page.screenshot(path=str(screenshots / "interrupt.png"))


def test_the_kernel_still_works_after_the_interrupt(scratch, screenshots):
    scratch.run(2)
    scratch.wait_until_done(2)
    expect(scratch.output(2)).to_have_text("still 42 after the interrupt", timeout=UI_TIMEOUT_MS)
    scratch.page.screenshot(path=str(screenshots / "scratch.png"))
