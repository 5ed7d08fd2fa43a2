import pathlib
import sys

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
# The notebooks import `instruments.bench` from their own folder; the tests do the same.
sys.path.insert(0, str(NOTEBOOKS))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: helpers every suite shares


import contextlib  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402

import pytest  # noqa: E402
import splitbrain._routing  # noqa: E402
from machinery import PACKAGES  # noqa: E402

splitbrain._routing.exempt(*PACKAGES)

from jupyterlab_session import BUILD_DIR, CHROMIUM, CHROMIUM_ARGS, KERNEL, Lab, wait_until  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures see whether the test itself failed (the browser suites screenshot failures).
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


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


# The fixtures that hold an open notebook page, by test module; a failed test leaves a screenshot of it.
PAGE_FIXTURES = ("page", "scratch", "quickstart", "lab_instruments")


@pytest.fixture(autouse=True)
def screenshot_on_failure(request):
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed:
        return
    name = next((n for n in PAGE_FIXTURES if n in request.fixturenames), None)
    if name is not None:
        screenshots = request.getfixturevalue("screenshots")
        request.getfixturevalue(name).page.screenshot(path=str(screenshots / f"failed-{request.node.name}.png"))


@pytest.fixture(scope="module")
def screenshots():
    folder = BUILD_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def kernelspec():
    try:
        return KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(f"no kernelspec {KERNEL!r} on JUPYTER_PATH={os.environ.get('JUPYTER_PATH')!r}; "
                    "build the kernel (the build tree's share/jupyter holds its kernelspec)")
