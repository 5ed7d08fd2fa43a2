"""Issue 9 point 8: names bound outside any context (`_unlink = os.unlink` at import, `from shutil import
rmtree`, a class body's `cls = pathlib.Path`) act on the slave inside its context, as if looked up at
call time; outside any context they are the real functions in everything code can observe."""

import functools
import inspect
import os
import pathlib
import pickle
import posixpath
import shutil
import types
from stat import S_ISDIR
from unittest import mock

import splitbrain
from splitbrain import _core

# Bound at import, outside any context (what test.support.os_helper and libraries do).
getpid = os.getpid
stat = os.stat
unlink = os.unlink
walk = os.walk
join = os.path.join
rmtree = shutil.rmtree
LocalPath = pathlib.Path


class Helpers:
    _unlink = os.unlink  # a builtin: never binds, as the real one
    _walk = os.walk      # a Python function: binds, as the real one


def test_a_name_bound_outside_acts_on_the_slave_inside_its_context(linux_box, tmp_path):
    assert getpid() == os.getpid()
    target = tmp_path / "bound.txt"
    target.write_text("x")
    with linux_box:
        assert getpid() == linux_box.pid
        unlink(str(target))  # before: local_io_in_slave_context (the master's os.unlink)
        assert not linux_box.modules.os.path.exists(str(target))
        (tmp_path / "tree" / "sub").mkdir(parents=True)
        rmtree(str(tmp_path / "tree"))
        assert not os.path.exists(str(tmp_path / "tree"))
        target.write_text("y")
        Helpers._unlink(str(target))
        assert not os.path.exists(str(target))
    assert getpid() == os.getpid()


def test_a_local_pathlib_class_does_its_io_through_the_active_slave(linux_box, tmp_path):
    with linux_box:
        base = LocalPath(str(tmp_path)) / "made"
        base.mkdir()                       # pathlib's own os.mkdir: routed now
        (base / "a.txt").write_text("hello")
        assert sorted(p.name for p in base.iterdir()) == ["a.txt"]
        assert [p.name for p in base.glob("*.txt")] == ["a.txt"]
        (base / "a.txt").rename(base / "b.txt")
        (base / "b.txt").touch()
        (base / "b.txt").unlink()
        base.rmdir()
        assert not linux_box.modules.os.path.exists(str(base))


def test_outside_any_context_it_is_the_real_function_to_whoever_looks():
    real_stat, real_walk, real_join = vars(os)["stat"], vars(os)["walk"], vars(posixpath)["join"]
    assert type(stat) is _core.RoutingBuiltin and type(walk) is _core.RoutingFunction
    assert os.stat is os.stat  # one stand-in per attribute
    assert stat == real_stat and real_stat == stat and hash(stat) == hash(real_stat)
    assert join == real_join and join("a", "b") == "a/b"
    assert os.stat in os.supports_dir_fd and {os.open, os.stat, os.unlink} <= os.supports_dir_fd
    assert isinstance(stat, types.BuiltinFunctionType) and isinstance(walk, types.FunctionType)
    assert (stat.__name__, stat.__qualname__, stat.__module__, stat.__doc__) == (
        real_stat.__name__, real_stat.__qualname__, real_stat.__module__, real_stat.__doc__)
    assert inspect.signature(stat) == inspect.signature(real_stat)
    assert inspect.signature(walk) == inspect.signature(real_walk)
    assert pickle.loads(pickle.dumps(stat)) is real_stat
    assert pickle.loads(pickle.dumps(join)) == real_join
    assert functools.wraps(walk)(lambda: None).__name__ == "walk"
    helpers = Helpers()
    assert helpers._unlink == vars(os)["unlink"]  # a builtin does not bind
    assert isinstance(helpers._walk, types.MethodType) and helpers._walk.__self__ is helpers
    assert repr(stat) == repr(real_stat)


def test_mock_patch_puts_back_the_real_function(tmp_path):
    real_unlink = vars(os)["unlink"]
    with mock.patch("os.unlink") as fake:
        os.unlink("nothing")
        fake.assert_called_once_with("nothing")
    assert vars(os)["unlink"] is real_unlink
    saved = os.unlink  # swap_attr's way: getattr, setattr, setattr back
    os.unlink = print
    os.unlink = saved
    assert vars(os)["unlink"] is real_unlink
    # the standard library keeps the real functions: shutil's check of os.supports_dir_fd
    assert shutil._use_fd_functions == (
        {vars(os)["open"], vars(os)["stat"], vars(os)["unlink"], vars(os)["rmdir"]} <= os.supports_dir_fd
        and vars(os)["scandir"] in os.supports_fd and vars(os)["stat"] in os.supports_follow_symlinks)


def test_the_standard_library_and_exempt_packages_get_the_real_functions(tmp_path):
    (tmp_path / "sb_exempt_probe.py").write_text("from os import listdir\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        splitbrain._routing.exempt("sb_exempt_probe")
        import sb_exempt_probe
        assert sb_exempt_probe.listdir is vars(os)["listdir"]
    finally:
        sys.path.remove(str(tmp_path))


def test_os_walk_inside_a_context_is_steered_by_its_caller(linux_box, tmp_path):
    for sub in ("keep/deep", "prune/deep"):
        (tmp_path / sub).mkdir(parents=True)
    with linux_box:
        seen = []
        for top, dirs, files in os.walk(str(tmp_path)):
            seen.append(os.path.relpath(top, str(tmp_path)))
            if "prune" in dirs:
                dirs.remove("prune")  # the slave's os.walk would have walked its own copy
        assert sorted(seen) == [".", "keep", "keep/deep"]
        walked = walk(str(tmp_path))  # bound at import: the same
        top, dirs, _ = next(walked)
        os.rename(str(tmp_path / "keep"), str(tmp_path / "kept"))  # after the first step, before the next
        dirs[:] = ["kept"]
        assert [os.path.basename(t) for t, _, _ in walked] == ["kept", "deep"]
        modes = [os.fstat(fd).st_mode for _, _, _, fd in os.fwalk(str(tmp_path))]  # open while suspended
        assert len(modes) == 5 and all(S_ISDIR(mode) for mode in modes)
        assert linux_box.modules.os.getpid() == linux_box.pid


def test_pathlib_inside_a_context_is_the_masters_pathlib_acting_on_the_slave(linux_box, tmp_path):
    with linux_box:
        p = pathlib.Path(str(tmp_path)) / "x.txt"  # no round trip: a local PosixPath
        assert type(p) is vars(pathlib)["PosixPath"] and isinstance(p, pathlib.PurePath)
        assert pickle.loads(pickle.dumps(p)) == p
        assert eval(repr(p), pathlib.__dict__) == p
        p.write_text("there")
        assert p.read_text() == "there" and p.exists()
        assert pathlib.Path.cwd() == pathlib.Path(linux_box.modules.os.getcwd())
        p.unlink()
        assert not linux_box.modules.os.path.exists(str(p))


def test_struct_sequence_classes_are_the_masters_inside_a_context(linux_box, tmp_path):
    masters = os.stat_result
    with linux_box:
        result = os.stat(str(tmp_path))
        assert os.stat_result is masters and isinstance(result, os.stat_result)
        assert pickle.loads(pickle.dumps(result)) == result


def test_os_spawn_inside_a_context_starts_the_program_on_the_slave_without_fork(linux_box, tmp_path):
    import sys
    marker = tmp_path / "spawned"
    with linux_box:
        code = os.spawnv(os.P_WAIT, "/bin/sh", ["sh", "-c", f"echo $PPID > {marker}; exit 3"])
        assert code == 3
        assert int(marker.read_text()) == linux_box.pid  # started by the slave's worker
        pid = os.spawnlp(os.P_NOWAIT, "true", "true")
        assert os.waitpid(pid, 0)[1] == 0
        assert os.spawnve(os.P_WAIT, sys.executable, [sys.executable, "-c", "import os, sys; "
                          "sys.exit(int(os.environ['SB_CODE']))"], {"SB_CODE": "5"}) == 5


def test_os_fwalk_bottom_up_inside_a_context(linux_box, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "f").write_text("x")
    with linux_box:
        seen = [(os.path.relpath(top, str(tmp_path)), sorted(dirs), files)
                for top, dirs, files, _ in os.fwalk(str(tmp_path), topdown=False)]
    assert seen == [("a/b", [], []), ("a", ["b"], ["f"]), (".", ["a"], [])]
