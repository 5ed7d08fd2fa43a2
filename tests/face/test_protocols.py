"""Issue 9 point 5: Python's protocols on proxies: __fspath__, __index__, __hash__/__eq__, __len__,
__contains__, __bool__, iteration, context managers; inspect.signature and help() of a remote
function show the remote signature and docstring."""

import inspect
import os
import pathlib
import posixpath

import pytest


def test_a_remote_dir_entry_and_path_are_path_like_for_local_code(linux_box, tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with linux_box:
        entry = next(iter(os.scandir(tmp_path)))
        remote_path = pathlib.Path(tmp_path) / "a.txt"
    assert os.fspath(entry) == str(tmp_path / "a.txt")  # local code, outside the context
    assert posixpath.join(entry, "sub") == str(tmp_path / "a.txt" / "sub")
    assert os.fspath(remote_path) == str(tmp_path / "a.txt")
    with open(remote_path) as f:  # the master's open, given a remote path: its text
        assert f.read() == "x"
    with linux_box:
        f = open(tmp_path / "a.txt")
    # as a local file, a remote file is no os.PathLike (so numpy takes it for a file, test_remote_files.py)
    assert not isinstance(f, os.PathLike)
    with pytest.raises(TypeError):
        os.fspath(f)
    other = linux_box.modules.builtins.object()  # a proxy of a class the master has no io twin of
    with pytest.raises(TypeError, match="expected str, bytes or os.PathLike object, not remote"):
        os.fspath(other)
    f.close()


def test_index_len_contains_bool_iteration_and_with(linux_box, tmp_path):
    builtins = linux_box.modules.builtins
    index_like = builtins.eval("type('Three', (), {'__index__': lambda self: 3})()")
    assert [10, 20, 30, 40][index_like] == 40
    assert bin(index_like) == "0b11"
    remote_set = linux_box.modules.os.supports_dir_fd  # a set of functions: a remote object
    with linux_box:
        assert os.stat in remote_set
        assert len(remote_set) >= 2
        assert bool(remote_set)
        assert os.stat in list(remote_set)
        with open(tmp_path / "lines.txt", "w") as f:
            f.write("a\nb\n")
        assert f.closed
        with open(tmp_path / "lines.txt") as f:
            assert [line for line in f] == ["a\n", "b\n"]


def test_remote_functions_are_hashable_and_equal_in_local_sets_and_dict_keys(linux_box):
    with linux_box:
        functions = {os.open, os.stat}
        assert os.open in functions
        assert os.listdir not in functions
        table = {os.open: "open", os.stat: "stat"}
        assert table[os.stat] == "stat"
        assert os.open == os.open
        assert os.open != os.stat
        assert all(function in os.supports_dir_fd for function in functions)


def test_inspect_signature_and_help_show_the_remote_function(linux_box, capsys):
    with linux_box:
        signature = inspect.signature(os.makedirs)
        assert str(signature) == "(name, mode=511, exist_ok=False)"
        assert list(signature.parameters) == ["name", "mode", "exist_ok"]
        assert signature.parameters["exist_ok"].default.__repr__() == "False"
        assert inspect.signature(os.makedirs) is signature  # remembered per remote function
        assert "leaf directory" in os.makedirs.__doc__
        assert str(inspect.signature(os.stat)).startswith("(path, *, dir_fd=None")
        help(os.makedirs)
    shown = capsys.readouterr().out
    assert "makedirs" in shown
    assert "Super-mkdir; create a leaf directory and all intermediate ones." in shown
