"""Issue 9 point 3: a local object that is not plain data crosses to the slave by reference (the
client's export table), so the slave can use it; sets cross by value with their elements as
themselves; exported objects live until the slave releases them, or the session ends."""

import dataclasses
import gc
import io
import os
import weakref

from conftest import wait_until


def test_a_local_set_of_remote_functions_compares_with_the_slaves_sets(linux_box):
    with linux_box:
        assert ({os.open, os.stat} <= os.supports_dir_fd) is True
        assert (os.stat in os.supports_follow_symlinks) is True
        expected = linux_box.run(_dir_fd_open_stat)
        assert ({os.open, os.stat} <= os.supports_dir_fd) is expected
        assert (frozenset({os.stat}) <= os.supports_dir_fd) is True


def _dir_fd_open_stat():
    import os
    return {os.open, os.stat} <= os.supports_dir_fd


def test_a_bytesio_is_written_by_the_slave_where_it_lives(linux_box, tmp_path):
    (tmp_path / "data.bin").write_bytes(b"x" * 1000 + b"end")
    local = io.BytesIO()
    with linux_box:
        with open(tmp_path / "data.bin", "rb") as f:
            linux_box.modules.shutil.copyfileobj(f, local, 256)  # the slave's copy loop: local.write called back
    assert local.getvalue() == b"x" * 1000 + b"end"


def test_a_dataclass_is_used_on_the_slave_by_attribute_repr_and_equality(linux_box):
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    point = Point(1, 2)
    builtins = linux_box.modules.builtins
    assert builtins.getattr(point, "x") == 1
    assert builtins.repr(point) == "test_a_dataclass_is_used_on_the_slave_by_attribute_repr_and_equality." \
                                   "<locals>.Point(x=1, y=2)"
    assert linux_box.modules.operator.eq(point, Point(1, 2)) is True
    builtins.setattr(point, "y", 5)
    assert point.y == 5
    # == without a hash of its own: unhashable there too
    assert linux_box.run(_hash_fails, point) == "TypeError"


def _hash_fails(obj):
    try:
        hash(obj)
    except TypeError as exc:
        return type(exc).__name__
    return "hashed"


class _Tree:
    """A local object with several protocols."""

    def __init__(self, path):
        self.path = path
        self.items = ["a", "b", "c"]
        self.entered = 0

    def __fspath__(self):
        return self.path

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __contains__(self, item):
        return item in self.items

    def __getitem__(self, index):
        return self.items[index]

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        return False


def _use(tree):
    import os
    with tree as same:
        assert same is tree
    return (len(tree), list(tree), "b" in tree, "z" in tree, tree[2], os.fspath(tree), bool(tree),
            sorted(os.listdir(tree)))


def test_protocols_of_a_local_object_work_on_the_slave(linux_box, tmp_path):
    (tmp_path / "one").write_text("")
    tree = _Tree(str(tmp_path))
    assert linux_box.run(_use, tree) == (3, ["a", "b", "c"], True, False, "c", str(tmp_path), True, ["one"])
    assert tree.entered == 1


def test_iterating_a_long_local_sequence_is_batched(linux_box):
    numbers = list(range(1000))
    numbers.append(object())  # not plain: the whole list goes by reference
    before = linux_box.requests
    assert linux_box.modules.builtins.len(linux_box.modules.builtins.list(numbers)) == 1001
    # the call, __len__ (list's length hint), one answer per 100 items, then len of the result
    assert linux_box.requests - before == 1 + 1 + 11 + 1


def test_a_local_object_without_a_protocol_is_refused_there_as_here(linux_box):
    assert linux_box.run(_len_of, object()) == "TypeError: object of type 'LocalObject' has no len()"


def _len_of(obj):
    try:
        len(obj)
    except TypeError as exc:
        return f"TypeError: {exc}"
    return "had a len"


def test_a_local_object_lives_until_the_slave_releases_it(linux_box):
    class Payload:
        pass

    payload = Payload()
    alive = weakref.ref(payload)
    kept = linux_box.modules.collections.deque()
    kept.append(payload)
    del payload
    gc.collect()
    assert alive() is not None  # the slave holds it
    assert kept[0] is alive()
    kept.clear()

    def released():
        linux_box.ping()  # ping is answered by the supervisor: it does not carry releases
        linux_box.modules.builtins.len(kept)  # the next reply carries the slave's releases
        gc.collect()
        return alive() is None

    wait_until(released, timeout=10)


def test_a_call_argument_is_released_with_the_calls_reply(linux_box):
    exports = linux_box._exports
    before = len(exports)
    assert linux_box.modules.builtins.repr(io.BytesIO()).startswith("<_io.BytesIO object at")
    assert len(exports) == before


def test_the_export_table_is_cleared_when_the_session_ends(fresh_box):
    class Payload:
        pass

    payload = Payload()
    kept = fresh_box.modules.collections.deque()
    kept.append(payload)
    assert len(fresh_box._exports) == 1
    alive = weakref.ref(payload)
    del payload
    fresh_box.close()
    gc.collect()
    assert alive() is None
    assert len(fresh_box._exports) == 0


def test_a_local_object_of_another_kind_shows_the_masters_repr(linux_box):
    thing = object()
    assert linux_box.modules.builtins.repr(thing) == repr(thing)


def test_a_local_mocks_special_methods_answer_the_slave(linux_box):
    """test_subprocess's mock.patch.object(proc, "stdin"): the slave compares the local MagicMock
    (a special method called back on it). A MagicMock's __eq__ is a descriptor of its class that
    gives the mock's own method; taken from the class unbound it failed with `_get_eq.<locals>.__eq__()
    takes 1 positional argument but 2 were given`."""
    from unittest import mock
    local = mock.MagicMock()
    other = mock.MagicMock()
    operator = linux_box.modules.operator
    assert operator.eq(local, local) is True
    assert operator.eq(local, other) is False  # its __eq__ gives NotImplemented: identities compared
    assert operator.ne(local, other) is True
    assert operator.eq(3, local) is False
    assert operator.countOf([local, None, None], None) == 2  # Popen.communicate's idiom
    local.__eq__.return_value = True
    assert operator.eq(local, other) is True  # the mock's configured __eq__, not object's
