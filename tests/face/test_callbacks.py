"""Issue 9 point 2: a local callable passed to a slave (function, lambda, bound method, class,
functools.partial) is called back on the master while the call runs, one round trip per call; it may
call the same slave; errors and interrupts travel both ways; what cannot call back is a clear error."""

import functools
import os
import shutil
import signal
import threading
import time

import pytest

from conftest import wait_until


def test_copytree_with_ignore_patterns_calls_ignore_back_on_the_master(linux_box, tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    for name in ("keep.txt", "drop.tmp", "sub/deep.txt", "sub/deep.tmp"):
        (source / name).write_text(name)
    seen = []
    patterns = shutil.ignore_patterns("*.tmp")

    def ignore(directory, names):
        seen.append((os.path.basename(directory), sorted(names)))
        return patterns(directory, names)

    with linux_box:
        shutil.copytree(source, tmp_path / "dst", ignore=ignore)
        shutil.copytree(source, tmp_path / "dst2", ignore=shutil.ignore_patterns("*.tmp"))
    for copy in ("dst", "dst2"):
        copied = sorted(str(p.relative_to(tmp_path / copy)) for p in (tmp_path / copy).rglob("*"))
        assert copied == ["keep.txt", "sub", "sub/deep.txt"]
    assert seen == [("src", ["drop.tmp", "keep.txt", "sub"]), ("sub", ["deep.tmp", "deep.txt"])]


def test_os_walk_onerror_gets_the_slaves_error_on_the_master(linux_box, tmp_path):
    errors = []
    with linux_box:
        assert list(os.walk(str(tmp_path / "missing"), onerror=errors.append)) == []
    assert len(errors) == 1
    assert type(errors[0]) is FileNotFoundError
    assert errors[0].filename == str(tmp_path / "missing")


def test_open_with_an_opener_that_opens_on_the_slave(linux_box, tmp_path):
    calls = []
    with linux_box:
        directory = os.open(str(tmp_path), os.O_RDONLY)

        def opener(path, flags):
            calls.append(path)
            return os.open(path, flags, dir_fd=directory)  # routed: a nested call to the same slave

        with open("made.txt", "w", opener=opener) as f:
            f.write("via opener")
        os.close(directory)
    assert calls == ["made.txt"]
    assert (tmp_path / "made.txt").read_text() == "via opener"


def test_tarfile_filters_are_called_back_with_remote_members(linux_box, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.log").write_text("b")
    tarfile = linux_box.modules.tarfile
    names = []

    def only_text(member, *path):  # TarFile.add's filter(tarinfo); extractall's filter(member, path)
        names.append(member.name)
        return member if member.name.endswith(".txt") else None

    archive = tarfile.open(str(tmp_path / "x.tar"), "w")
    archive.add(str(tmp_path / "a.txt"), arcname="a.txt", filter=only_text)
    archive.add(str(tmp_path / "b.log"), arcname="b.log", filter=only_text)
    archive.close()
    assert names == ["a.txt", "b.log"]
    archive = tarfile.open(str(tmp_path / "x.tar"))
    if "filter" in str(linux_box.modules.inspect.signature(archive.extractall)):  # Python >= 3.11.4 there
        archive.extractall(str(tmp_path / "out"), filter=only_text)
    else:
        archive.extractall(str(tmp_path / "out"))
    archive.close()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt"]


def test_sorted_with_a_key_costs_one_round_trip_per_key_call(linux_box):
    words = ["pear", "fig", "banana", "kiwi"]
    remote_sorted = linux_box.modules.builtins.sorted
    remote_sorted(["warm", "up"], key=len)  # the attribute is known from now on
    before = linux_box.requests
    assert remote_sorted(words, key=lambda w: w[::-1]) == sorted(words, key=lambda w: w[::-1])
    assert linux_box.requests - before == 1 + len(words)  # the call, then one answer per key call


@pytest.mark.parametrize("kind", ["function", "lambda", "bound method", "class", "partial", "builtin"])
def test_each_kind_of_local_callable_is_called_back(linux_box, kind):
    class Tag:
        def __init__(self, value):
            self.value = value

        def wrap(self, value):
            return f"<{value}>"

    def wrap(value):
        return f"<{value}>"

    callback = {
        "function": wrap,
        "lambda": lambda value: f"<{value}>",
        "bound method": Tag(0).wrap,
        "class": Tag,
        "partial": functools.partial("<{}>".format),
        "builtin": len,
    }[kind]
    got = linux_box.modules.builtins.list(linux_box.modules.builtins.map(callback, ["ab", "c"]))
    expected = [callback("ab"), callback("c")]
    if kind == "class":  # instances of a local class come back as themselves
        assert [type(item) for item in got] == [Tag, Tag] and [item.value for item in got] == ["ab", "c"]
    else:
        assert got == expected


def test_a_callback_may_call_the_same_slave_and_nest(linux_box, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("")
    builtins = linux_box.modules.builtins

    def inner(name):
        with linux_box:
            return os.path.isdir(os.path.join(str(tmp_path), name))  # nested request, from the callback

    def outer(name):
        # a callback whose own remote call calls back again
        return builtins.sorted([name, name + "x"], key=lambda n: (inner(n[:1]), n))[0]

    assert builtins.sorted(["f", "d"], key=inner) == ["f", "d"]
    assert builtins.list(builtins.map(outer, ["d", "f"])) == ["d", "f"]
    assert linux_box.ping() > 0  # the session is quiet and well afterwards


def test_an_exception_of_the_callback_is_faithful_on_the_slave_and_comes_back_as_itself(linux_box):
    class Stop(ValueError):
        pass

    raised = Stop("stopped here", 3)

    def fail(_):
        raise raised

    def catch(callback):
        try:
            callback(1)
        except ValueError as exc:  # on the slave: the nearest class it has, with the args
            return type(exc).__name__, exc.args
        return None

    assert linux_box.run(catch, fail) == ("ValueError", ("stopped here", 3))
    with pytest.raises(Stop) as caught:
        linux_box.modules.builtins.sorted([1, 2], key=fail)
    assert caught.value is raised  # the very exception, with the master's traceback

    def missing(_):
        return open("/nonexistent/splitbrain-callback")  # the master's own open: not in a context

    with pytest.raises(FileNotFoundError) as caught:
        linux_box.modules.builtins.sorted([1, 2], key=missing)
    assert caught.value.filename == "/nonexistent/splitbrain-callback"


def test_ctrl_c_on_the_master_during_a_callback_interrupts_the_whole_call(fresh_box):
    def slow_key(value):
        os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C while the master runs the callback
        time.sleep(30)
        return value

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        fresh_box.modules.builtins.sorted([2, 1], key=slow_key)
    assert time.monotonic() - start < 10
    assert fresh_box.modules.builtins.sum([1, 2]) == 3  # the session goes on


def test_a_cancel_of_the_outer_call_ends_the_wait_for_its_callback(either_box, request):
    """Also when the next call overtakes the cancel (the direct way): it runs, and the cancel still
    ends the wait."""
    if request.node.callspec.params["either_box"] == "direct":
        # Known race, open: on the direct way the cancel goes through the supervisor while the
        # callback's answer goes straight to the worker, and the answer can arrive first (then the
        # call returns). It failed 5 of 20 runs on main's build of 2026-12-01 (1d9629e) as here.
        request.applymarker(pytest.mark.xfail(reason="the cancel through the relay can arrive after the "
                                              "callback's answer sent direct", strict=False))
    entered, release = threading.Event(), threading.Event()
    outcome = []

    def blocked_key(value):
        entered.set()
        release.wait(30)
        return value

    def caller():
        try:
            either_box.modules.builtins.sorted([2, 1], key=blocked_key)
            outcome.append("returned")
        except KeyboardInterrupt:
            outcome.append("interrupted")

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        assert entered.wait(20)
        either_box.cancel_all()
        # The worker no longer waits for the callback: it serves another call at once.
        start = time.monotonic()
        assert either_box.modules.os.getpid() == either_box.pid
        assert time.monotonic() - start < 5
    finally:
        release.set()
        thread.join(30)
    assert outcome == ["interrupted"]
    assert either_box.modules.builtins.sum([1, 2]) == 3


def test_a_cancel_ends_the_wait_for_a_callback_also_while_another_call_runs_there_meanwhile(either_box, tmp_path):
    """While a call waits for its callback, the worker serves the session's other calls; a cancel
    that arrives while one of them runs (on the direct path a later call overtakes the cancel that
    goes through the relay) still ends the wait of the call it names, once it is back there."""
    entered, release = threading.Event(), threading.Event()
    outcome, other = [], []
    mark = tmp_path / "running"

    def blocked_key(value):
        entered.set()
        release.wait(30)
        return value

    def caller():
        try:
            either_box.modules.builtins.sorted([2, 1], key=blocked_key)
            outcome.append("returned")
        except KeyboardInterrupt:
            outcome.append("interrupted")

    def sleeper():
        try:
            either_box.modules.builtins.exec(f"open({str(mark)!r}, 'w').close()\nimport time\ntime.sleep(20)")
            other.append("slept")
        except KeyboardInterrupt:
            other.append("interrupted")

    thread, second = threading.Thread(target=caller), threading.Thread(target=sleeper)
    thread.start()
    try:
        assert entered.wait(20)
        second.start()
        wait_until(mark.exists, 20, "the other call to run while the callback waits")
        either_box.cancel_all()
        second.join(10)
        assert other == ["interrupted"]
    finally:
        release.set()
        thread.join(30)
        second.join(30)
    assert outcome == ["interrupted"]
    assert either_box.modules.builtins.sum([1, 2]) == 3


def test_preexec_fn_of_the_master_is_refused_before_the_fork(linux_box):
    with pytest.raises(RuntimeError) as caught:
        linux_box.modules.subprocess.Popen(["true"], preexec_fn=lambda: None)
    assert str(caught.value) == (
        "[splitbrain.callback_unavailable] preexec_fn= runs in the child process on the slave, between fork and "
        "exec, where a function of the master cannot be called back; do that set-up in the child itself "
        "(start_new_session=True, process_group=, user=, umask=, or a shell command)")


def test_a_callback_from_a_thread_on_the_slave_is_a_clear_error_not_a_hang(linux_box, capsys):
    called = []
    thread = linux_box.modules.threading.Thread(target=lambda: called.append(1))
    thread.start()
    thread.join(20)
    assert thread.is_alive() is False
    assert called == []

    # threading's excepthook printed it on the slave; the output comes to us
    message = "[splitbrain.callback_unavailable] a function or object of the master was used from another thread"
    seen = []

    def has_message():
        linux_box.ping()
        linux_box._conn.drain()
        seen.append(capsys.readouterr().err)
        return message in "".join(seen)

    wait_until(has_message, timeout=10)


def test_a_callback_kept_by_the_slave_works_in_later_calls_and_comes_back_as_itself(linux_box):
    calls = []

    def note(value):
        calls.append(value)
        return value * 2

    kept = linux_box.modules.collections.deque()
    kept.append(note)
    assert kept[0] is note  # the master's object comes back as itself
    assert linux_box.modules.builtins.list(linux_box.modules.builtins.map(kept[0], [1, 2])) == [2, 4]
    remote_partial = linux_box.modules.functools.partial(note, 5)
    assert remote_partial() == 10  # called back during a later call
    assert calls == [1, 2, 5]


def test_callbacks_nested_too_deep_are_a_clear_error(linux_box):
    call = linux_box.modules.operator.call
    depth = []

    def recurse():
        depth.append(1)
        return call(recurse)  # each level: a call to the slave whose callback calls it again

    with pytest.raises(RuntimeError) as caught:
        call(recurse)
    assert "[splitbrain.callback_unavailable] callbacks to the master nest deeper than 32 (a callback that " \
           "calls the slave, whose code calls back, ...)" in str(caught.value)
    assert len(depth) == 32
    assert linux_box.modules.builtins.sum([1, 2]) == 3
