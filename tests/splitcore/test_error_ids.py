"""The error vocabulary lives in one place: the ids are defined once (splitcore/errors.hpp, seen
from Python as splitbrain._core.error_ids), catalogued once (docs/errors.md), mapped to exception
types once (splitbrain._errors.TYPES), and their "[splitbrain.<id>]" text is built by one builder.
An id nobody can look up, or a word spelled in two places, drifts: `session_lost` did."""
import pathlib
import re

import pytest

import splitbrain
from splitbrain import _core, _errors

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("agent", "kernel", "splitcore", "scripts", "bench", "notebooks/instruments")
SOURCE_SUFFIXES = {".cpp", ".hpp", ".py"}
DEFINITIONS = {ROOT / "splitcore/include/splitcore/errors.hpp", ROOT / "splitcore/src/errors.cpp",
               ROOT / "splitcore/python/splitbrain/_errors.py"}
BUILDER = ROOT / "splitcore/src/errors.cpp"
CATALOGUE = ROOT / "docs/errors.md"


def sources():
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in SOURCE_SUFFIXES and path.is_file():
                yield path


def catalogued_ids():
    return re.findall(r"^\| `([a-z][a-z_]*)` \|", CATALOGUE.read_text(encoding="utf-8"), re.MULTILINE)


def test_the_catalogue_lists_every_defined_id_once_in_the_order_of_errors_hpp():
    listed = catalogued_ids()
    assert len(listed) == len(set(listed)), f"an id is catalogued twice: {listed}"
    assert listed == list(_core.error_ids)


def test_every_defined_id_is_used_by_the_code():
    text = {path: path.read_text(encoding="utf-8") for path in sources() if path not in DEFINITIONS}
    unused = []
    for code in _core.error_ids:
        cpp = re.compile(rf"errc::{code}\b")
        python = re.compile(rf"""(?:error|message)\(\s*["']{code}["']""")
        if not any(cpp.search(t) or python.search(t) for t in text.values()):
            unused.append(code)
    assert not unused, f"ids defined in errors.hpp but never raised or logged: {unused}"


def test_only_the_builder_writes_the_id_prefix():
    handwritten = [f"{path.relative_to(ROOT)}:{n}" for path in sources() if path != BUILDER
                   for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                   if "[splitbrain." in line]
    assert not handwritten, f"'[splitbrain.' written by hand instead of by the builder: {handwritten}"


def test_the_python_table_maps_only_defined_ids_to_exception_types():
    assert set(_errors.TYPES) <= set(_core.error_ids)
    for code, cls in _errors.TYPES.items():
        assert isinstance(cls, type) and issubclass(cls, BaseException), code


def test_the_builder_refuses_an_id_that_is_not_defined():
    assert _errors.message("closed", "x is closed") == "[splitbrain.closed] x is closed"
    with pytest.raises(ValueError, match="'no_such_id' is not an error id"):
        _errors.message("no_such_id", "text")


def test_an_error_carries_its_id_and_its_type_from_the_one_table():
    exc = _errors.error("unknown_slave", "no slave named 'x'")
    assert type(exc) is LookupError and exc.code == "unknown_slave"
    assert str(exc) == "[splitbrain.unknown_slave] no slave named 'x'"


def test_the_cpp_half_raises_through_the_same_table():
    # The channel's splitcore::error{nothing_listening}, raised at the C++ boundary: nothing
    # listens on a loopback port; its type is a subclass of AgentUnreachable, through the table.
    with pytest.raises(splitbrain.AgentUnreachable) as caught:
        splitbrain.connect("tcp://127.0.0.1:9?key=none", name="nowhere", timeout=0.5)
    assert type(caught.value) is splitbrain.NothingListening
    assert caught.value.code == "nothing_listening"
    assert str(caught.value).startswith("[splitbrain.nothing_listening] nothing listens on tcp://127.0.0.1:9 ")
