"""JupyterLab in a real browser: the venv's JupyterLab on 127.0.0.1 with the demo agents bench-a and
bench-b, serving a copy of notebooks/; Debian's Chromium driven by Playwright; the splitbrain kernel
found through JUPYTER_PATH (the build tree's kernelspec). Cells run and their output shows in the
page, a slave cell's output line by line; the toolbar's stop button interrupts a local and a remote
call and the kernel lives on; quickstart.ipynb lists the demo agents and runs on bench-a.
Screenshots land in $SPLITBRAIN_BUILD_DIR/screenshots/."""
import contextlib
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
from deadline import wait_until

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"  # Debian's Chromium only, never a download
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from conftest import NOTEBOOKS

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


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lab")
    shutil.copytree(NOTEBOOKS, workdir / "root", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    running = Lab(workdir)
    yield running
    running.stop()
    # SHALL: stopping JupyterLab and the demo agents leaves no kernel, agent or worker behind.
    try:
        wait_until(lambda: not running.leftovers(), 10, "every kernel, agent and worker ending",
                   diagnose=lambda: f": still running: {running.leftovers()}")
    finally:
        for pid in running.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


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


@pytest.fixture(scope="module")
def kernelspec():
    try:
        return KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(f"no kernelspec {KERNEL!r} on JUPYTER_PATH={os.environ.get('JUPYTER_PATH')!r}; "
                    "build the kernel (the build tree's share/jupyter holds its kernelspec)")


def open_notebook(lab, browser, kernelspec, path, height=900):
    page = browser.new_page(viewport={"width": 1280, "height": height})
    console = open(lab.workdir / f"console-{path}.log", "a", encoding="utf-8")
    page.on("console", lambda message: console.write(f"{message.type}: {message.text}\n"))
    page.on("close", lambda _: console.close())
    page.goto(lab.page_url(path))
    return NotebookPage(page, kernelspec.display_name)


SCRATCH_CELLS = [
    "answer = 6 * 7\nprint('answer', answer)",
    "import time\ntime.sleep(60)",
    "print('still', answer, 'after the interrupt')",
    "%%slave bench-a\nimport subprocess\n"
    "subprocess.run(['sh', '-c', 'for i in 1 2 3; do echo tick $i; sleep 1; done'])",
    "%%slave bench-a\nimport subprocess\nsubprocess.run(['sleep', '30'])",
    "%%slave bench-a\nimport os\nprint('bench-a still serves pid', os.getpid())",
]


@pytest.fixture(scope="module")
def scratch(lab, browser, kernelspec):
    (lab.root / "scratch.ipynb").write_text(json.dumps(notebook(SCRATCH_CELLS)))
    opened = open_notebook(lab, browser, kernelspec, "scratch.ipynb")
    expect(opened.cells).to_have_count(len(SCRATCH_CELLS), timeout=UI_TIMEOUT_MS)
    opened.wait_for_kernel("idle")
    yield opened
    opened.page.close()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request, screenshots):
    yield
    report = getattr(request.node, "report_call", None)
    opened = next((request.getfixturevalue(name) for name in ("scratch", "quickstart", "lab_instruments")
                   if name in request.fixturenames), None)
    if report is not None and report.failed and opened is not None:
        opened.page.screenshot(path=str(screenshots / f"failed-{request.node.name}.png"))


def interrupt_and_expect_keyboard_interrupt(opened, index):
    expect(opened.prompt(index)).to_have_text("[*]:", timeout=UI_TIMEOUT_MS)
    opened.wait_for_kernel("busy")
    started = time.monotonic()
    opened.interrupt()
    expect(opened.output(index)).to_contain_text("KeyboardInterrupt", timeout=INTERRUPT_TIMEOUT_MS)
    opened.wait_until_done(index, timeout=INTERRUPT_TIMEOUT_MS)
    return time.monotonic() - started


def test_the_notebook_opens_with_the_kernel_its_metadata_names(scratch, kernelspec):
    expect(scratch.kernel_name()).to_have_text(kernelspec.display_name, timeout=UI_TIMEOUT_MS)


def test_a_cell_runs_in_the_kernel_and_its_output_shows_in_the_page(scratch):
    scratch.run(0)
    scratch.wait_until_done(0)
    expect(scratch.output(0)).to_have_text("answer 42", timeout=UI_TIMEOUT_MS)


def test_the_toolbar_stop_button_interrupts_a_sleeping_cell_within_seconds(scratch, screenshots):
    scratch.run(1)
    elapsed = interrupt_and_expect_keyboard_interrupt(scratch, 1)
    print(f"\nlocal time.sleep: KeyboardInterrupt in the page {elapsed:.2f} s after the click")
    scratch.page.screenshot(path=str(screenshots / "interrupt.png"))


def test_the_kernel_keeps_its_variables_after_the_interrupt(scratch):
    scratch.run(2)
    scratch.wait_until_done(2)
    expect(scratch.output(2)).to_have_text("still 42 after the interrupt", timeout=UI_TIMEOUT_MS)


def test_a_slave_cells_output_appears_line_by_line_while_it_runs(scratch):
    scratch.run(3)
    # SHALL: remote output appears in the cell as it is produced, not when the cell ends.
    expect(scratch.output(3)).to_contain_text("tick 1", timeout=UI_TIMEOUT_MS)
    assert "tick 3" not in scratch.output(3).inner_text()
    expect(scratch.prompt(3)).to_have_text("[*]:")
    scratch.wait_until_done(3)
    expect(scratch.output(3)).to_contain_text(re.compile(r"tick 1\s+tick 2\s+tick 3"))


def test_the_stop_button_interrupts_a_remote_call_and_the_slave_stays_usable(scratch, screenshots):
    scratch.run(4)
    elapsed = interrupt_and_expect_keyboard_interrupt(scratch, 4)
    print(f"\nremote sleep 30 on bench-a: KeyboardInterrupt in the page {elapsed:.2f} s after the click")
    scratch.run(5)
    scratch.wait_until_done(5)
    expect(scratch.output(5)).to_contain_text("bench-a still serves pid", timeout=UI_TIMEOUT_MS)
    scratch.page.screenshot(path=str(screenshots / "scratch.png"))


# --- notebooks/quickstart.ipynb, as a new user opens it after `make lab`

def notebook_cells(lab, name):
    return [("".join(cell["source"]), cell["cell_type"])
            for cell in json.loads((lab.root / name).read_text())["cells"]]


def quickstart_cells(lab):
    return notebook_cells(lab, "quickstart.ipynb")


@pytest.fixture(scope="module")
def quickstart(lab, browser, kernelspec):
    opened = open_notebook(lab, browser, kernelspec, "quickstart.ipynb", height=1400)
    expect(opened.cells).to_have_count(len(quickstart_cells(lab)), timeout=UI_TIMEOUT_MS)
    opened.wait_for_kernel("idle")
    yield opened
    opened.page.close()


@pytest.fixture(scope="module")
def lab_instruments(lab, browser, kernelspec):
    opened = open_notebook(lab, browser, kernelspec, "lab-instruments.ipynb", height=1400)
    expect(opened.cells).to_have_count(len(notebook_cells(lab, "lab-instruments.ipynb")),
                                       timeout=UI_TIMEOUT_MS)
    opened.wait_for_kernel("idle")
    yield opened
    opened.page.close()


def run_through(opened, cells, last):
    for index in range(last + 1):
        if cells[index][1] == "code" and opened.prompt(index).inner_text() == "[ ]:":
            opened.run(index)
            opened.wait_until_done(index)


def test_quickstart_shows_the_demo_agents_in_an_html_table(lab, quickstart):
    cells = quickstart_cells(lab)
    index = next(i for i, (source, kind) in enumerate(cells) if source.strip() == "%slaves")
    run_through(quickstart, cells, index)
    table = quickstart.output(index).locator("table")
    expect(table).to_contain_text("bench-a")
    expect(table).to_contain_text("bench-b")


def test_quickstarts_first_slave_cell_runs_on_bench_a_and_shows_its_output(lab, quickstart, screenshots):
    cells = quickstart_cells(lab)
    target = next(i for i, (source, kind) in enumerate(cells)
                  if kind == "code" and source.startswith("%%slave bench-a"))
    run_through(quickstart, cells, target)
    output = quickstart.output(target)
    expect(output).to_contain_text("bench-a pid", timeout=UI_TIMEOUT_MS)
    expect(output.locator("[data-mime-type='application/vnd.jupyter.stderr']")).to_have_count(0)
    pid, cwd = re.search(r"bench-a pid (\d+) in (\S+)", output.inner_text()).groups()
    # The printed pid is a worker of the demo agent bench-a (on this machine, so /proc can tell).
    assert os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("splitbrain-worker")
    assert os.readlink(f"/proc/{pid}/cwd") == cwd
    assert pathlib.Path(cwd).is_relative_to(lab.demo_state / "bench-a")
    quickstart.page.screenshot(path=str(screenshots / "quickstart.png"))


# --- notebooks/lab-instruments.ipynb: instruments on bench-a, the plot drawn here

def test_lab_instruments_runs_on_bench_a_and_draws_its_plot_in_the_page(lab, lab_instruments, screenshots):
    cells = notebook_cells(lab, "lab-instruments.ipynb")
    run_through(lab_instruments, cells, len(cells) - 1)
    for index, (source, kind) in enumerate(cells):
        if kind == "code":
            errors = lab_instruments.output(index).locator(".jp-OutputArea-output[data-mime-type="
                                                           "'application/vnd.jupyter.stderr']")
            expect(errors).to_have_count(0)
    # The instruments ran on bench-a: the PSU cell printed the pid of a worker of the demo agent
    # bench-a (on this machine, so /proc can tell), working in bench-a's folder.
    visa = next(i for i, (source, kind) in enumerate(cells) if 'psu.query("*IDN?")' in source)
    expect(lab_instruments.output(visa)).to_contain_text("bench-a pid", timeout=UI_TIMEOUT_MS)
    pid = re.search(r"bench-a pid (\d+): SPLITBRAIN,SIM-PSU", lab_instruments.output(visa).inner_text()).group(1)
    assert os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("splitbrain-worker")
    assert pathlib.Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(lab.demo_state / "bench-a")
    plot = next(i for i, (source, kind) in enumerate(cells) if "plt.show()" in source)
    expect(lab_instruments.output(plot).locator("img")).to_have_count(1)
    lab_instruments.cells.nth(plot).scroll_into_view_if_needed()
    lab_instruments.page.screenshot(path=str(screenshots / "lab-instruments.png"))
