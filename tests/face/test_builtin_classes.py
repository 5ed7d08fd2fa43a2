"""Issue 9 point 1: classes behave as classes, on the slave too. The master's builtin classes (int,
str, list, dict, bytes, type, ...), its exception classes of the standard library and the methods of
builtin classes (str.lower) cross to a slave by name and arrive as the slave's own, so code the slave
runs with them as arguments (isinstance, sorted's key=, map, except) behaves as it does locally."""

import os
import subprocess

KINDS = (int, float)  # a global of box.run functions below: crosses by name, not refused


def test_isinstance_on_the_slave_with_the_masters_builtin_classes_is_true(linux_box):
    builtins_ = linux_box.modules.builtins
    # SHALL: a builtin class given to a slave is that slave's own class
    assert builtins_.isinstance(0, int) is True
    assert builtins_.isinstance("x", str) is True
    assert builtins_.isinstance(b"x", (int, bytes)) is True  # a tuple of them: each by name
    assert builtins_.isinstance([], dict) is False
    assert builtins_.issubclass(bool, int) is True
    assert builtins_.issubclass(type, object) is True


def test_a_builtin_class_arrives_as_the_slaves_own_object(linux_box):
    def identities(classes):
        import builtins
        return [cls is getattr(builtins, cls.__name__) for cls in classes]

    assert linux_box.run(identities, [int, str, list, dict, bytes, type, object, BaseException]) == [True] * 8


def test_a_builtin_class_as_a_callable_argument_runs_on_the_slave_without_callbacks(fresh_box):
    builtins_ = fresh_box.modules.builtins
    requests, round_trips = fresh_box.requests, fresh_box.round_trips
    assert builtins_.list(builtins_.map(int, ["1", "22", "3"])) == [1, 22, 3]
    assert builtins_.sorted(["b", "A", "c"], key=str.lower) == ["A", "b", "c"]
    assert builtins_.sorted([3, "10", 2], key=int) == [2, 3, "10"]
    # one request and its reply per call above: map's int and sorted's key= are the slave's own,
    # not the master's called back once per item (each answer would be a message more)
    assert fresh_box.round_trips - round_trips == 4
    assert fresh_box.requests - requests == 4


def test_a_method_of_a_builtin_class_is_the_slaves_own(linux_box):
    def same(f, g):
        return f is str.lower and g is dict.__getitem__

    assert linux_box.run(same, str.lower, dict.__getitem__) is True


def test_an_exception_class_given_to_the_slave_is_caught_there(linux_box, tmp_path):
    def stat_or_caught(path, cls):
        try:
            os.stat(path)
        except cls as exc:
            return ("caught", type(exc) is cls)
        return ("not raised", None)

    missing = str(tmp_path / "missing")
    assert linux_box.run(stat_or_caught, missing, FileNotFoundError) == ("caught", True)
    assert linux_box.run(stat_or_caught, missing, OSError) == ("caught", False)

    def is_own(cls):
        return cls is subprocess.CalledProcessError and issubclass(cls, subprocess.SubprocessError)

    assert linux_box.run(is_own, subprocess.CalledProcessError) is True


def test_box_run_takes_builtin_classes_from_its_globals(linux_box):
    def numbers(values):
        return [v for v in values if isinstance(v, KINDS)]

    assert linux_box.run(numbers, [1, "a", 2.5, None]) == [1, 2.5]


def test_a_builtin_class_the_builtins_module_does_not_name_still_crosses_by_reference(linux_box):
    # type(None) is builtins.NoneType, which builtins does not hold: the master's object, by
    # reference (a callback there), as before; README "Known limits"
    def name_of(cls):
        return cls.__name__

    assert linux_box.run(name_of, type(None)) == "NoneType"
