"""str and bytes values from 1 KiB on cross as raw frames, not inline CBOR (docs/protocol.md, "Values";
issue 11 point 3): user code sees the same values, both ways, in calls, results, containers,
callbacks and exceptions, below, at and above that threshold and the 64 KiB one before it."""

import os

import pytest

SIZES = (0, 1, 1023, 1024, 1025, 4096, 65535, 65536, 70000)


def texts(n):
    """str values of n UTF-8 bytes or about: ASCII, two-byte, four-byte characters; lone surrogates."""
    return ("a" * n, "\u00e9" * (n // 2) + "z" * (n % 2), "\U0001f600" * (n // 4),
            b"\xff".decode("utf-8", "surrogateescape") * (n // 3))


@pytest.mark.parametrize("n", SIZES)
def test_str_and_bytes_cross_both_ways_unchanged(linux_box, n):
    deepcopy = linux_box.modules.copy.deepcopy  # the slave's: the value goes there and comes back
    for text in texts(n):
        back = deepcopy(text)
        assert type(back) is str and back == text
    data = bytes(range(256)) * (n // 256) + b"\x00" * (n % 256)
    for value in (data, bytearray(data), [data, "k" * n], {"k" * n: (data, "v" * n)}, {"s" * n, "t"},
                  frozenset({data})):
        back = deepcopy(value)
        assert type(back) is type(value) and back == value


def test_many_long_values_in_one_message(linux_box):
    value = [f"{i:04}" * 300 for i in range(50)] + [bytes([i]) * 2000 for i in range(50)]
    assert linux_box.modules.copy.deepcopy(value) == value
    assert linux_box.modules.builtins.sorted(value[:50], reverse=True) == sorted(value[:50], reverse=True)


def test_long_values_in_a_callback_and_its_answer(linux_box):
    seen = []

    def shout(s):  # called back from the slave's map with each long str
        seen.append(s)
        return s.upper() + "\u00e9" * 700

    with linux_box:
        items = ["x" * 3000, "y" * 1023, "z" * 1024]
        result = linux_box.modules.builtins.list(linux_box.modules.builtins.map(shout, items))
    assert seen == items
    assert result == [s.upper() + "\u00e9" * 700 for s in items]


def test_long_exception_args_arrive_as_values(linux_box):
    key = "k" * 5000
    with pytest.raises(KeyError) as remote:
        linux_box.modules.operator.getitem({}, key)
    assert remote.value.args == (key,)
    with pytest.raises(ValueError) as local:
        int("x" * 3000)
    with pytest.raises(ValueError) as there:
        linux_box.modules.builtins.int("x" * 3000)
    assert there.value.args == local.value.args
    assert str(there.value).split("\n")[0] == str(local.value)


def test_a_long_file_name_with_bytes_not_utf8(linux_box, tmp_path):
    """os.listdir of a directory whose names are long and not UTF-8 (surrogateescape): the names come
    back as locally, and open() with them works there."""
    names = sorted(os.fsdecode(b"n\xff" + bytes([65 + i]) * 200) for i in range(8))
    for name in names:
        with open(tmp_path / name, "w") as f:
            f.write(name[2:5])
    with linux_box:
        listed = sorted(os.listdir(str(tmp_path)))
        assert listed == names
        with open(os.path.join(str(tmp_path), listed[0])) as f:
            assert f.read() == names[0][2:5]
    joined = "/".join(listed)  # 1.6 KB with lone surrogates: a frame of its UTF-8, surrogatepass
    assert linux_box.modules.copy.deepcopy(joined) == joined
