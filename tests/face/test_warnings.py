"""Warnings raised on the slave reach the master's warnings machinery: its filters, pytest.warns,
assertWarns and warnings.catch_warnings see them (test_subprocess's `Popen(bufsize=1)` in binary
mode, whose RuntimeWarning the slave's io module raises)."""

import warnings

import pytest


def _warn_there(box, text, category="UserWarning"):
    box.modules.builtins.exec(f"import warnings; warnings.warn({text!r}, {category})", {})


def test_a_slaves_warning_is_caught_by_pytest_warns_on_the_master(linux_box):
    import subprocess
    with linux_box:
        with pytest.warns(RuntimeWarning, match="line buffering"):
            p = subprocess.Popen(["true"], stdin=subprocess.PIPE, bufsize=1)
        p.communicate(timeout=30)


def test_the_masters_filters_decide(linux_box):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        _warn_there(linux_box, "from the slave")
    assert [(w.category, str(w.message)) for w in got] == [(UserWarning, "from the slave")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DeprecationWarning, match="made an error"):
            _warn_there(linux_box, "made an error", "DeprecationWarning")
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("ignore")
        _warn_there(linux_box, "ignored")
    assert got == []
    assert linux_box.modules.os.getpid() == linux_box.pid  # the session goes on


def test_a_warning_class_the_master_lacks_arrives_as_warning(linux_box):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        linux_box.modules.builtins.exec(
            "import warnings\nclass LabWarning(UserWarning): pass\nwarnings.warn('odd', LabWarning)", {})
    assert [(w.category, str(w.message)) for w in got] == [(Warning, "odd")]


def test_the_default_action_shows_a_slaves_warning_once_per_place(linux_box):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("default")
        linux_box.modules.builtins.exec(
            "import warnings\nfor i in range(3):\n    warnings.warn('in a loop', UserWarning)", {})
    assert [str(w.message) for w in got] == ["in a loop"]
