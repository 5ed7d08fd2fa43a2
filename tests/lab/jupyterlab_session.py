"""JupyterLab in a real browser, for the suites of tests/lab: the venv's JupyterLab on 127.0.0.1 with
the demo agents bench-a and bench-b, serving a copy of notebooks/; Debian's Chromium driven by
Playwright; the splitbrain kernel found through JUPYTER_PATH (the build tree's kernelspec). The
fixtures (lab, browser, kernelspec, screenshots) are in conftest.py."""
import contextlib
import json
import os
import pathlib
import re
import secrets
import signal
import subprocess
import urllib.request

import pytest
from deadline import wait_until

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"  # Debian's Chromium only, never a download
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
from playwright.sync_api import expect  # noqa: E402

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"

VENV = pathlib.Path(os.environ.get("SPLITBRAIN_VENV", NOTEBOOKS.parent / ".venv"))
DEMO_AGENTS = NOTEBOOKS.parent / "scripts" / "demo_agents.py"
BUILD_DIR = pathlib.Path(os.environ.get("SPLITBRAIN_BUILD_DIR", NOTEBOOKS.parent / "build"))
KERNEL = os.environ.get("SPLITBRAIN_LAB_KERNEL", "splitbrain")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SERVER_START_TIMEOUT = 60
UI_TIMEOUT_MS = 30_000
INTERRUPT_TIMEOUT_MS = 5_000
EXECUTED_PROMPT = re.compile(r"^\[\d+\]:$")

# A lab with no news, no update check and no remembered workspace, so nothing pops over the
# notebook; and every cell in the DOM (no windowing), so cells are found by their index.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def notebook(cells, kernel=KERNEL):
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "execution_count": None,
                   "outputs": [], "source": source} for i, source in enumerate(cells)],
    }


class Lab:
    """JupyterLab with the demo agents bench-a and bench-b, started as `scripts/lab.sh` starts them
    (through scripts/demo_agents.py), but on a free port, with a token, a copy of notebooks/ and a
    registry of its own."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.root = workdir / "root"
        self.demo_state = workdir / "demo"
        self.token = secrets.token_hex(16)
        self.log_path = workdir / "lab.log"
        runtime = workdir / "runtime"
        settings = workdir / "settings"
        for name, value in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = dict(os.environ,
                   SPLITBRAIN_CONFIG=str(workdir / "splitbrain-config"),
                   JUPYTER_RUNTIME_DIR=str(runtime),
                   JUPYTER_CONFIG_DIR=str(workdir / "config"),
                   JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(workdir / "workspaces"))
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(VENV / "bin" / "python"), str(DEMO_AGENTS), "--state", str(self.demo_state),
             "bench-a", "bench-b", "--",
             str(VENV / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", "--port=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             f"--MultiKernelManager.default_kernel_name={KERNEL}",
             "--LabApp.news_url=None", "--LabApp.extension_manager=readonly"]
            + (["--allow-root"] if os.geteuid() == 0 else []),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        info = wait_until(lambda: self._exited() or self._server_info(runtime), SERVER_START_TIMEOUT,
                          "JupyterLab writing its server info", diagnose=self.tail)
        self.url = info["url"].rstrip("/")
        self.server_pid = info["pid"]
        wait_until(lambda: self._exited() or self._answers(), SERVER_START_TIMEOUT,
                   "JupyterLab answering /api/status", diagnose=self.tail)

    def _server_info(self, runtime):
        for path in runtime.glob("jpserver-*.json"):
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass  # caught half-written
        return None

    def _exited(self):
        if self.process.poll() is not None:
            pytest.fail(f"jupyter lab exited with status {self.process.returncode}{self.tail()}")

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
        # SIGTERM makes JupyterLab shut its kernels down before it exits (SIGINT without a terminal
        # exits at once, orphaning them); demo_agents.py then sees its command end and stops the
        # agents.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.server_pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()

    def leftovers(self):
        """Processes still running from this lab: kernels (their connection files are in its
        runtime folder), agents and workers (their keys are in its demo folder)."""
        found = []
        for proc in pathlib.Path("/proc").glob("[0-9]*"):
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(str(self.workdir).encode() in arg for arg in argv):
                found.append(int(proc.name))
        return found


class NotebookPage:
    """One notebook open in JupyterLab, driven as a user would: click a cell, Shift+Enter."""

    def __init__(self, page, kernel_display_name):
        self.page = page
        self.kernel_display_name = kernel_display_name
        self.cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

    def wait_for_kernel(self, status):
        # The status bar's "<kernel> | <Status>" comes from the session, so it reads Idle only once
        # the kernel is connected; the toolbar's execution indicator says idle before that, and a
        # cell run then is silently dropped.
        expect(self.page.locator(".jp-StatusBar-Widget")).to_contain_text(
            f"{self.kernel_display_name} | {status.capitalize()}", timeout=UI_TIMEOUT_MS)

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


def open_notebook(lab, browser, kernelspec, path, height=900):
    page = browser.new_page(viewport={"width": 1280, "height": height})
    console = open(lab.workdir / f"console-{path}.log", "a", encoding="utf-8")
    page.on("console", lambda message: console.write(f"{message.type}: {message.text}\n"))
    page.on("close", lambda _: console.close())
    page.goto(lab.page_url(path))
    return NotebookPage(page, kernelspec.display_name)
