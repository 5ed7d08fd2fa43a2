"""The JupyterLab extension (labextension/) in Debian's Chromium, fed by the kernel's splitbrain
comm: the status-bar item names the machine the notebook acts on, as cells run; the Slaves panel
lists the demo agents with their state, finds a killed agent down, and connects, spawns and
forgets slaves. A lab of its own (see conftest.py), since one of its agents is killed."""
import json
import os
import pathlib
import signal

import pytest
from playwright.sync_api import expect

from jupyterlab_session import UI_TIMEOUT_MS, notebook, open_notebook, wait_until

CELLS = [
    "%slave bench-a",
    "%%slave bench-b\nimport os, time\nprint('bench-b pid', os.getpid())\ntime.sleep(3)",
    "%slave local",
    "%%slave bench-a bench-b\nimport os, subprocess\nprint('hello from', os.getcwd())\n"
    "if 'bench-b' in os.getcwd(): subprocess.run(['sh', '-c', 'sleep 1; echo slow; sleep 3'])",
    "%%slave bench-a\nimport subprocess\nsubprocess.run(['sleep', '3.5'])",
    "import splitbrain\nbench_l = splitbrain.spawn('bench-l')\nheld = bench_l.lease('ASRL/dev/ttyS9::INSTR')",
]


@pytest.fixture(scope="module")
def page(lab, browser, kernelspec):
    (lab.root / "extension.ipynb").write_text(json.dumps(notebook(CELLS)))
    opened = open_notebook(lab, browser, kernelspec, "extension.ipynb")
    expect(opened.cells).to_have_count(len(CELLS), timeout=UI_TIMEOUT_MS)
    opened.wait_for_kernel("idle")
    yield opened
    opened.page.close()


def active_slave(opened):
    return opened.page.locator(".jp-StatusBar-Widget .jp-splitbrain-ActiveSlave-name")


def panel(opened):
    return opened.page.locator("#splitbrain-slaves")


def slave_state(opened, name):
    return panel(opened).locator(f"div.jp-splitbrain-slave[data-slave='{name}'] .jp-splitbrain-slave-state")


def open_panel(opened):
    if not panel(opened).is_visible():
        opened.page.locator(".jp-splitbrain-ActiveSlave").click()
    expect(panel(opened)).to_be_visible(timeout=UI_TIMEOUT_MS)


def agent_processes(lab, name):
    """Pids of the demo agent *name* and its workers (their argv names its folder)."""
    folder = str(lab.demo_state / name).encode()
    pids = []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(folder in arg for arg in argv) and int(proc.name) != os.getpid():
            pids.append(int(proc.name))
    return pids


def test_the_status_bar_says_local_before_any_slave_is_active(page):
    expect(active_slave(page)).to_have_text("local", timeout=UI_TIMEOUT_MS)


def test_the_status_item_changes_after_slave_bench_a_and_the_magic_says_how_to_return(page):
    page.run(0)
    page.wait_until_done(0)
    # SHALL: `%slave NAME` prints one line, what now runs where and how to return.
    expect(page.output(0)).to_contain_text(
        "cells now run with bench-a active (tcp://127.0.0.1:", timeout=UI_TIMEOUT_MS)
    expect(page.output(0)).to_contain_text("`%slave local` returns to this machine")
    expect(active_slave(page)).to_have_text("bench-a (sticky)", timeout=UI_TIMEOUT_MS)


def test_the_status_item_names_the_running_cells_slave_and_then_the_sticky_one_again(page):
    page.run(1)
    expect(page.output(1)).to_contain_text("bench-b pid", timeout=UI_TIMEOUT_MS)
    expect(active_slave(page)).to_have_text("bench-b (cell)")
    expect(page.prompt(1)).to_have_text("[*]:")
    page.wait_until_done(1)
    expect(active_slave(page)).to_have_text("bench-a (sticky)", timeout=UI_TIMEOUT_MS)


def test_a_fan_out_shows_each_slaves_area_live_and_the_status_names_both(page, screenshots):
    page.run(3)
    areas = page.output(3).locator(".jp-OutputArea-output")
    # SHALL: bench-a's output and result show while bench-b still runs; bench-b's output as made.
    expect(page.output(3)).to_contain_text("[bench-a] done in", timeout=UI_TIMEOUT_MS)
    expect(page.output(3)).to_contain_text("[bench-b] running")
    expect(page.prompt(3)).to_have_text("[*]:")
    expect(active_slave(page)).to_have_text("bench-a, bench-b (cell)")
    expect(page.output(3)).to_contain_text("slow", timeout=UI_TIMEOUT_MS)
    expect(page.prompt(3)).to_have_text("[*]:")
    page.page.screenshot(path=str(screenshots / "fan-out-live.png"))
    page.wait_until_done(3)
    expect(areas).to_have_count(2)
    expect(areas.nth(0)).to_contain_text("[bench-a] done in")
    expect(areas.nth(1)).to_contain_text("[bench-b] done in")
    expect(active_slave(page)).to_have_text("bench-a (sticky)")


def test_a_long_remote_call_shows_a_waiting_line_that_goes_away_when_it_ends(page):
    page.run(4)
    expect(page.output(4)).to_contain_text("waiting on bench-a: subprocess.run(…)", timeout=UI_TIMEOUT_MS)
    page.wait_until_done(4)
    expect(page.output(4)).not_to_contain_text("waiting on")


def test_the_panel_shows_bench_a_connected_and_a_killed_bench_b_down(lab, page, screenshots):
    open_panel(page)
    expect(slave_state(page, "bench-a")).to_have_text("connected", timeout=UI_TIMEOUT_MS)
    expect(slave_state(page, "bench-b")).to_have_text("connected", timeout=UI_TIMEOUT_MS)
    row = panel(page).locator("div.jp-splitbrain-slave[data-slave='bench-a']")
    expect(row).to_contain_text("tcp://127.0.0.1:")
    expect(row).to_contain_text("linux")
    expect(row).to_contain_text("3.11")
    victims = agent_processes(lab, "bench-b")
    assert victims, "no bench-b agent process found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not agent_processes(lab, "bench-b"), 10, "bench-b's processes ending")
    panel(page).locator(".jp-splitbrain-refresh").click()
    expect(slave_state(page, "bench-b")).to_have_text("down (unreachable)", timeout=UI_TIMEOUT_MS)
    expect(slave_state(page, "bench-a")).to_have_text("connected")
    page.page.screenshot(path=str(screenshots / "slaves-panel.png"))


def test_the_panel_spawns_a_slave_shows_its_agent_log_and_forgets_it(page):
    open_panel(page)
    panel(page).locator(".jp-splitbrain-new-name").fill("bench-c")
    panel(page).locator(".jp-splitbrain-spawn").click()
    expect(slave_state(page, "bench-c")).to_have_text("connected", timeout=UI_TIMEOUT_MS)
    expect(panel(page).locator(".jp-splitbrain-SlavesPanel-message")).to_contain_text("spawned bench-c at")
    log = panel(page).locator("details.jp-splitbrain-log[data-slave='bench-c']")
    log.locator("summary").click()
    expect(log).to_contain_text("listening on tcp://127.0.0.1:")
    panel(page).locator("div.jp-splitbrain-slave[data-slave='bench-c'] .jp-splitbrain-forget").click()
    expect(panel(page).locator("div.jp-splitbrain-slave[data-slave='bench-c']")).to_have_count(0,
                                                                                            timeout=UI_TIMEOUT_MS)
    expect(panel(page).locator(".jp-splitbrain-SlavesPanel-message")).to_have_text("forgot bench-c")


def test_the_panel_connects_a_connection_file_and_reports_a_mistake_in_one_line(lab, page):
    open_panel(page)
    panel(page).locator(".jp-splitbrain-new-name").fill("bench-a-again")
    panel(page).locator(".jp-splitbrain-new-target").fill(str(lab.demo_state / "bench-a" / "connection.json"))
    panel(page).locator(".jp-splitbrain-add").click()
    expect(slave_state(page, "bench-a-again")).to_have_text("connected", timeout=UI_TIMEOUT_MS)
    panel(page).locator(".jp-splitbrain-new-name").fill("")
    panel(page).locator(".jp-splitbrain-spawn").click()
    message = panel(page).locator(".jp-splitbrain-SlavesPanel-message.jp-mod-error")
    expect(message).to_have_text("UsageError: [splitbrain.usage] spawn needs a NAME", timeout=UI_TIMEOUT_MS)


def test_slave_local_returns_the_status_item_to_local(page):
    page.run(2)
    page.wait_until_done(2)
    expect(page.output(2)).to_contain_text("cells now run on this machine")
    expect(active_slave(page)).to_have_text("local", timeout=UI_TIMEOUT_MS)


def test_the_panel_shows_who_holds_a_lease_on_a_slave(page):
    """Issue 13 point 1: who holds what shows in the lab panel, as soon as the cell that took the lease ends."""
    page.run(5)
    page.wait_until_done(5)
    open_panel(page)
    lease = panel(page).locator("div.jp-splitbrain-slave[data-slave='bench-l'] .jp-splitbrain-lease")
    expect(lease).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(lease).to_have_attribute("data-resource", "ASRL/dev/ttyS9::INSTR")
    expect(lease).to_contain_text("leased: ASRL/dev/ttyS9::INSTR by ")
    expect(lease).to_contain_text("(yours)")
    panel(page).locator("div.jp-splitbrain-slave[data-slave='bench-l'] .jp-splitbrain-forget").click()
    expect(panel(page).locator("div.jp-splitbrain-slave[data-slave='bench-l']")).to_have_count(0,
                                                                                         timeout=UI_TIMEOUT_MS)
