import pathlib
import sys

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
# The notebooks import `instruments.bench` from their own folder; the tests do the same.
sys.path.insert(0, str(NOTEBOOKS))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: helpers every suite shares


import pytest  # noqa: E402
import splitbrain._routing  # noqa: E402
from machinery import PACKAGES  # noqa: E402

splitbrain._routing.exempt(*PACKAGES)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures see whether the test itself failed (test_jupyterlab.py screenshots failures).
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
