"""Issue 11 point 6: `box.run(fn, *args, **kwargs)` and `@box.remote` run a whole function on the
slave in one round trip; the function travels as source, what it uses from outside travels beside it
or is refused by name ([splitbrain.not_shippable])."""

import os
import subprocess

import pytest

import splitbrain

LIMIT = 3  # a plain global: travels as a value


def count_entries(path, pattern=""):
    total = 0
    for name in os.listdir(path):  # `os` is a module global: imported on the slave by name
        if pattern in name:
            os.stat(os.path.join(path, name))
            total += 1
    return total


def test_a_loop_of_remote_operations_is_one_round_trip(linux_box, tmp_path):
    for i in range(50):
        (tmp_path / f"f{i}.txt").write_text("x")
    before = linux_box.requests
    # SHALL: the whole loop is one request, whatever it does inside
    assert linux_box.run(count_entries, str(tmp_path), pattern=".txt") == 50
    assert linux_box.requests - before == 1


def test_the_function_runs_on_the_slave(linux_box):
    def where():
        return os.getpid()
    assert linux_box.run(where) == linux_box.modules.os.getpid() != os.getpid()


def test_closures_over_plain_data_and_plain_globals_travel_as_values(linux_box):
    factor = {"k": 2}
    def scaled(x):
        return [x * factor["k"]] * LIMIT
    assert linux_box.run(scaled, 21) == [42, 42, 42]


def test_the_slaves_own_objects_travel_as_references(linux_box, tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("remote text")
    remote_file = linux_box.modules.builtins.open(str(path))
    def first_word():
        return remote_file.read().split()[0]
    assert linux_box.run(first_word) == "remote"
    remote_file.close()


def test_a_result_that_is_not_plain_comes_back_as_a_reference(linux_box, tmp_path):
    def opened(p):
        return open(p, "w")
    f = linux_box.run(opened, str(tmp_path / "out.txt"))
    assert isinstance(f, splitbrain.RemoteObject)
    f.write("via run")
    f.close()
    assert (tmp_path / "out.txt").read_text() == "via run"


def test_the_decorator_form_runs_on_the_slave_and_keeps_the_local_function(linux_box):
    @linux_box.remote
    def pid_and_sum(a, b=1):
        return os.getpid(), a + b
    assert pid_and_sum(2, b=3) == (linux_box.modules.os.getpid(), 5)
    assert pid_and_sum.local(2, b=3) == (os.getpid(), 5)
    assert pid_and_sum.__name__ == "pid_and_sum"


def test_a_remote_exception_raises_locally_as_its_type(linux_box, tmp_path):
    def missing(p):
        return open(p)
    with pytest.raises(FileNotFoundError) as raised:
        linux_box.run(missing, str(tmp_path / "absent"))
    assert raised.value.filename == str(tmp_path / "absent")


def exit_status(code):
    return subprocess.run(["sh", "-c", f"exit {code}"]).returncode  # `subprocess`: a module global


def test_a_module_global_is_the_slaves_module(linux_box):
    assert linux_box.run(exit_status, 4) == 4


def helper():
    return 1


class Local:
    pass


def test_a_local_function_or_object_used_inside_is_refused_by_name(linux_box):
    instance = Local()
    def uses_helper():
        return helper() + len([instance])
    before = linux_box.requests
    with pytest.raises(TypeError, match=r"\[splitbrain\.not_shippable\] .*uses_helper uses "
                                        r"instance \(test_run\.Local\), helper \(builtins\.function\)"):
        linux_box.run(uses_helper)
    assert linux_box.requests == before  # refused before anything is sent


def test_a_lambda_a_builtin_and_a_generator_are_refused(linux_box):
    with pytest.raises(TypeError, match=r"\[splitbrain\.not_shippable\] .*not a function defined with def"):
        linux_box.run(lambda: 1)
    with pytest.raises(TypeError, match=r"\[splitbrain\.not_shippable\] .*not a plain function"):
        linux_box.run(len, [1])
    def numbers():
        yield 1
    with pytest.raises(TypeError, match=r"\[splitbrain\.not_shippable\] .*generator function"):
        linux_box.run(numbers)


def test_the_remote_traceback_names_the_functions_own_line(linux_box):
    def fails():
        raise ValueError("from the slave")
    with pytest.raises(ValueError, match="from the slave") as raised:
        linux_box.run(fails)
    notes = "".join(getattr(raised.value, "__notes__", []))
    line = fails.__code__.co_firstlineno + 1
    assert f"line {line}, in fails" in notes
