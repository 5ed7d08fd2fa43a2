"""Issue 4 point 4: routed modules in sys.modules and in modules imported earlier; builtins.open and
io.open; constants cost no round trip, a module call exactly one."""

import builtins
import io
import os
import sys
import types

import pytest

import splitbrain
from conftest import run_python

LOCAL_PID = os.getpid()


def test_the_default_set_is_routed_in_sys_modules():
    for name in ["os", "os.path", "subprocess", "socket", "shutil", "glob", "tempfile", "platform",
                 "pathlib", "serial", "pyvisa", "usb"]:
        module = sys.modules[name]
        assert type(module).__name__ == "RoutedModule", name
        assert isinstance(module, types.ModuleType), name
    assert sys.modules["os"].path is sys.modules["os.path"]


def test_a_routed_module_outside_any_context_is_the_real_one():
    import posixpath
    assert os.getcwd() == posixpath.abspath(".")
    # a function read from it is the real one's stand-in (routing callable, test_bound_names.py)
    assert os.path.join == posixpath.join and splitbrain._core.unrouted(os.path.join) is posixpath.join
    assert os.sep == "/"


def test_a_library_imported_before_splitbrain_acts_on_the_slave_inside_a_context(linux_box, tmp_path):
    (tmp_path / "labtools.py").write_text(
        "import subprocess\n"
        "from os import path\n"
        "def parent_pid():\n"
        "    return int(subprocess.check_output(['sh', '-c', 'echo $PPID']))\n"
        "def exists(p):\n"
        "    return path.exists(p)\n")
    done = run_python(f"""
        import sys, os
        sys.path.insert(0, {str(tmp_path)!r})
        import labtools                      # before splitbrain: holds the real subprocess
        import splitbrain
        box = splitbrain.spawn("lab")
        print("local", labtools.parent_pid() == os.getpid())
        with box:
            print("remote", labtools.parent_pid() == box.pid)
            os.chdir({str(tmp_path)!r})
            open("only-there.txt", "w").close()
        print("local again", labtools.parent_pid() == os.getpid())
        box.close()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["local True", "remote True", "local again True"]


def test_builtins_open_and_io_open_act_on_the_slave_but_bytesio_stays_local(linux_box, tmp_path):
    assert builtins.open is io.open
    box_cwd = linux_box.modules.os.getcwd()
    try:
        linux_box.modules.os.chdir(str(tmp_path))
        with linux_box:
            with open("routed.txt", "w") as f:   # relative: the slave's cwd, not ours
                f.write("written on linux-box")
            with io.open("routed.txt") as f:
                assert f.read() == "written on linux-box"
            buffer = io.BytesIO(b"local")
            assert type(buffer) is io.BytesIO
        assert (tmp_path / "routed.txt").read_text() == "written on linux-box"
        assert not os.path.exists("routed.txt") or os.getcwd() == str(tmp_path)
    finally:
        linux_box.modules.os.chdir(box_cwd)


def test_module_constants_cost_no_round_trip_and_a_module_call_exactly_one(linux_box):
    with linux_box:
        os.getcwd()  # the import of os on the slave happens once, here
        os.path.exists("/")
        before = linux_box.requests
        assert os.sep == "/" and os.O_RDONLY == 0 and os.name == "posix"
        assert linux_box.requests == before
        os.getcwd()
        assert linux_box.requests == before + 1
        os.path.exists("/tmp")
        assert linux_box.requests == before + 2


def test_a_module_variable_the_slave_changes_is_read_fresh_not_kept_from_the_import(fresh_box, tmp_path):
    import tempfile
    with fresh_box:
        tempfile.tempdir                     # imports tempfile on the slave: tempdir is None there
        chosen = tempfile.gettempdir()       # sets it on the slave
        assert tempfile.tempdir == chosen
    remote_sys = fresh_box.modules.sys
    assert str(tmp_path) not in remote_sys.path
    fresh_box.modules.site.addsitedir(str(tmp_path))  # appends to the slave's sys.path
    assert str(tmp_path) in remote_sys.path


def test_only_immutable_values_under_constant_names_come_with_the_import(fresh_box):
    constants = fresh_box.modules.os.__dict__
    assert constants["sep"] == "/" and constants["O_RDONLY"] == 0 and constants["name"] == "posix"
    assert "supports_fd" not in constants    # a set
    remote_sys = fresh_box.modules.sys
    for mutable in ("path", "argv", "warnoptions"):       # lists: read when used
        assert mutable not in remote_sys.__dict__, mutable


def test_pure_posixpath_functions_run_locally_for_a_posix_slave(linux_box):
    with linux_box:
        os.path.exists("/")
        before = linux_box.requests
        assert os.path.join("a", "b") == "a/b"
        assert os.path.splitext("x.tar.gz") == ("x.tar", ".gz")
        assert os.path.basename("/a/b") == "b"
        assert linux_box.requests == before


def test_route_adds_a_module_to_the_routed_set(linux_box):
    import posix
    routed = splitbrain.route("posix")
    try:
        assert sys.modules["posix"] is routed
        assert "posix" in splitbrain.routed_names()
        import posix as again
        assert again.getpid() == LOCAL_PID
        with linux_box:
            assert again.getpid() == linux_box.pid
    finally:
        sys.modules["posix"] = posix


def test_from_import_inside_a_context_binds_the_slaves_object(linux_box):
    with linux_box:
        from os import getpid
    assert getpid() == linux_box.pid  # fixed to where it came from


def test_dir_of_a_routed_module_lists_the_slaves_names(linux_box):
    with linux_box:
        names = dir(os)
    assert "getcwd" in names and "listdir" in names


def test_a_routed_package_not_yet_imported_still_imports_its_submodules_locally():
    done = run_python("""
        import splitbrain, importlib.util
        import serial.tools.list_ports          # serial's real package is imported only now
        import serial
        print(type(serial).__name__, serial.tools.list_ports.__name__, serial.Serial.__module__)
        print(importlib.util.find_spec("serial").origin.endswith("serial/__init__.py"))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["RoutedModule serial.tools.list_ports serial.serialposix", "True"]


def test_a_hardware_library_absent_here_is_routed_and_says_so_when_used_locally():
    import usb
    assert type(usb).__name__ == "RoutedModule"
    assert not hasattr(usb, "__file__")
    with pytest.raises(splitbrain.SlaveOnlyModuleError, match=r"\[splitbrain\.slave_only_module\] module 'usb' "
                                                              r"exists only on a slave, not on this machine"):
        usb.core


def test_a_submodule_of_a_routed_package_imported_inside_a_context_is_still_usable_locally(linux_box):
    done = run_python("""
        import splitbrain, os
        box = splitbrain.spawn("imports")
        with box:
            import serial.tools.list_ports as remote_ports
            remote_pid = os.getpid()
        import serial.tools.list_ports as ports
        print(type(ports).__name__, callable(ports.comports), remote_pid != os.getpid())
        box.close()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["RoutedModule True True"]


def test_a_local_library_imported_inside_a_context_runs_its_import_time_code_locally(linux_box, tmp_path):
    (tmp_path / "probe_import.py").write_text(
        "import os\n"
        "PID_AT_IMPORT = os.getpid()\n"
        "def pid():\n"
        "    return os.getpid()\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with linux_box:
            import probe_import
            assert probe_import.pid() == linux_box.pid  # its calls follow the context...
        assert probe_import.PID_AT_IMPORT == LOCAL_PID  # ...but importing it happened here
        assert probe_import.pid() == LOCAL_PID
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("probe_import", None)


def test_a_standard_module_imported_after_splitbrain_keeps_the_real_modules_inside(linux_box):
    done = run_python("""
        import sys, splitbrain
        assert "linecache" not in sys.modules and "shlex" not in sys.modules and "tarfile" not in sys.modules
        import shlex, tarfile                # after splitbrain, outside any context
        box = splitbrain.spawn("stdlib")
        with box:
            import linecache                 # after splitbrain, inside a context
        print(type(shlex.os).__name__, type(linecache.os).__name__, type(sys.modules["os"]).__name__,
              type(tarfile.os).__name__, tarfile.bltn_open is splitbrain._routing.open)
        box.close()
    """)
    assert done.returncode == 0, done.stderr
    # tarfile opens and stats the user's files with what it bound at import: those stay routed
    assert done.stdout.split() == ["module", "module", "RoutedModule", "RoutedModule", "True"]


def test_source_lines_inside_a_context_are_the_masters_and_cost_no_round_trip(tmp_path):
    # Same relative file name, different text in the master's and the slave's working directories.
    (tmp_path / "master").mkdir()
    (tmp_path / "slave").mkdir()
    (tmp_path / "master" / "demo_source.py").write_text("def local_function():\n    return 'the master'\n")
    (tmp_path / "slave" / "demo_source.py").write_text("def local_function():\n    return 'the slave'\n")
    done = run_python("""
        import os, sys, splitbrain
        os.chdir(sys.argv[1])
        box = splitbrain.spawn("sources")
        box.modules.os.chdir(sys.argv[2])
        print("tokenize" in sys.modules)
        namespace = {}
        exec(compile(open("demo_source.py").read(), "demo_source.py", "exec"), namespace)
        with box:
            import inspect                   # brings tokenize and linecache, which read source files
            before = box.requests
            print(inspect.getsource(namespace["local_function"]).splitlines()[1].strip())
            print(box.requests - before)
        box.close()
    """, args=[str(tmp_path / "master"), str(tmp_path / "slave")])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["False", "return 'the master'", "0"]


def test_a_package_declared_exempt_keeps_the_real_modules_also_if_imported_before(tmp_path):
    """The kernel and the test suites declare their machinery with splitbrain._routing.exempt():
    SHALL act on the master inside a slave's context, whether imported before the declaration (even
    before splitbrain) or after it; packages not declared still follow the context."""
    for package in ("labrig", "labtool", "labkit"):
        (tmp_path / package).mkdir()
        for module in ("__init__", "late"):
            (tmp_path / package / f"{module}.py").write_text("import os\ndef pid():\n    return os.getpid()\n")
    done = run_python(f"""
        import sys, os
        sys.path.insert(0, {str(tmp_path)!r})
        import labrig                        # before splitbrain
        import splitbrain, splitbrain._routing
        import labtool, labkit               # after splitbrain, before the declaration
        splitbrain._routing.exempt("labrig", "labtool")
        import labrig.late, labtool.late     # after it
        here = os.getpid()
        box = splitbrain.spawn("machinery")
        with box:
            print(labrig.pid() == labrig.late.pid() == labtool.pid() == labtool.late.pid() == here,
                  labkit.pid() == box.pid)
        try:
            splitbrain._routing.exempt("labkit.late")
        except ValueError as e:
            print(e)
        box.close()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [
        "True True", "exempt() takes top-level package names, not 'labkit.late'"]


def test_an_attribute_read_outside_any_context_follows_every_change_of_the_real_module():
    # routed.cpp remembers the answers outside any context while the real module's namespace is
    # unchanged: a change there (not through the routed module) SHALL be seen at the next access
    real = splitbrain._core.routed_real(os)
    assert os.getcwd is not real.getcwd and splitbrain._core.unrouted(os.getcwd) is real.getcwd
    saved = real.sep
    try:
        vars(real)["sep"] = "!"
        assert os.sep == "!"
        real.sep = "?"
        assert os.sep == "?"
    finally:
        real.sep = saved
    assert os.sep == saved
    real.splitbrain_probe = lambda: "first"
    try:
        assert os.splitbrain_probe() == "first"
        real.splitbrain_probe = lambda: "second"
        assert os.splitbrain_probe() == "second"
        del real.splitbrain_probe
        with pytest.raises(AttributeError):
            os.splitbrain_probe
    finally:
        vars(real).pop("splitbrain_probe", None)


def test_a_module_getattr_answer_is_asked_again_at_every_access():
    import posixpath
    real_path = splitbrain._core.routed_real(os.path)
    assert real_path is posixpath
    answers = iter(["one", "two"])

    def module_getattr(name):
        if name != "splitbrain_dynamic":
            raise AttributeError(name)
        return next(answers)

    posixpath.__getattr__ = module_getattr
    try:
        assert os.path.splitbrain_dynamic == "one"
        assert os.path.splitbrain_dynamic == "two"
    finally:
        del posixpath.__getattr__
