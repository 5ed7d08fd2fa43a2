"""Issue 4 point 9: a module only the slave has imports from the slave inside its context; used
outside, it raises a clear error naming the slave; a module nobody has is an ImportError."""

import sys

import pytest

import splitbrain


@pytest.fixture
def slave_only_module(linux_box, tmp_path):
    """`instrument_driver`, importable on linux-box only (on its sys.path, not on ours)."""
    (tmp_path / "instrument_driver.py").write_text(
        "import os\n"
        "VERSION = '2.1'\n"
        "def where():\n"
        "    return os.getpid()\n")
    linux_box.modules.site.addsitedir(str(tmp_path))  # sys.path itself would arrive by value
    yield "instrument_driver"
    sys.modules.pop("instrument_driver", None)


def test_a_slave_only_module_imports_and_works_inside_the_context(linux_box, slave_only_module):
    with linux_box:
        import instrument_driver
        assert instrument_driver.where() == linux_box.pid
        assert instrument_driver.VERSION == "2.1"


def test_used_outside_the_context_it_raises_an_error_naming_the_slave(linux_box, slave_only_module):
    with linux_box:
        import instrument_driver
    with pytest.raises(splitbrain.SlaveOnlyModuleError,
                       match=r"\[splitbrain\.slave_only_module\] module 'instrument_driver' exists only on "
                             r"linux-box, not on this machine; use it inside "
                             r"`with splitbrain\.slave\('linux-box'\):` or a `%%slave linux-box` cell"):
        instrument_driver.where()


def test_from_a_slave_only_module_import_a_name_outside_the_context_names_the_slave(linux_box, slave_only_module):
    with linux_box:
        import instrument_driver
    with pytest.raises(ImportError, match=r"exists only on linux-box.*splitbrain\.slave\('linux-box'\)") as caught:
        from instrument_driver import where  # noqa: F401
    assert isinstance(caught.value, splitbrain.SlaveOnlyModuleError)
    assert caught.value.name == "instrument_driver"
    # introspection asks for dunders: those stay plain AttributeErrors
    assert not hasattr(instrument_driver, "__file__")
    assert getattr(instrument_driver, "__version__", "absent") == "absent"


def test_the_hint_names_an_api_that_exists(linux_box, slave_only_module):
    with linux_box:
        import instrument_driver
    with splitbrain.slave("linux-box"):     # what the error message tells the user to write
        assert instrument_driver.VERSION == "2.1"


def test_a_module_nobody_has_is_an_import_error_as_usual(linux_box):
    with linux_box:
        with pytest.raises(ModuleNotFoundError):
            import no_such_module_anywhere  # noqa: F401
    with pytest.raises(ModuleNotFoundError):
        import no_such_module_anywhere  # noqa: F401,F811
