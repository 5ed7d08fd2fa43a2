"""JupyterLab in a real browser (see jupyterlab_session.py): cells run and their output shows in the
page, a slave cell's output line by line; the toolbar's stop button interrupts a local and a remote
call and the kernel lives on; quickstart.ipynb lists the demo agents and runs on bench-a.
Screenshots land in $SPLITBRAIN_BUILD_DIR/screenshots/."""
import json
import os
import pathlib
import re
import time

import pytest
from playwright.sync_api import expect

from jupyterlab_session import INTERRUPT_TIMEOUT_MS, UI_TIMEOUT_MS, notebook, open_notebook


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
