"""Pipelined writes on remote files (issue 11 point 3; docs/protocol.md "Pipelined writes",
splitcore/python/README.md "Remote files"): small writes and the close of a file only read are sent
without waiting, and user code sees what it sees locally.

Each scenario below runs twice, on the master with no slave and inside a slave's context, and
returns a transcript of what user code can observe (results, exceptions with their type, errno and
message, file contents, sizes seen by os.stat and by a subprocess); the two transcripts must be
equal. Failures only the slave's disk can report are made with RLIMIT_FSIZE on the worker (EFBIG
past the limit, as a full disk gives ENOSPC), compared with the same limit in a local child."""

import ast
import errno
import os
import resource
import subprocess

import pytest

from conftest import run_python


def observe(fn, *args, **kwargs):
    """fn's result, or its exception as (type name, errno, str)."""
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # the transcript records it: that is what user code would catch
        return ("raised", type(exc).__name__, getattr(exc, "errno", None), str(exc).split("\n")[0])


def both(box, scenario, path):
    local = scenario(str(path) + ".local")
    with box:
        remote = scenario(str(path) + ".remote")
    return local, remote


# ---- the scenarios: plain Python, as a user writes it ----

def write_then_read_back(p):
    out = []
    with open(p, "w") as f:
        out.append(f.write("splitbrain\n" * 372))
    with open(p) as f:
        out.append(f.read())
    out.append(os.stat(p).st_size)
    return out


def interleaved_reads_writes_seek_tell(p):
    out = []
    with open(p, "w+") as f:
        out.append(f.write("abc"))
        out.append(f.tell())
        out.append(f.seek(0))
        out.append(f.read())
        out.append(f.write("def"))
        out.append(f.tell())
        f.seek(0)
        out.append(f.read())
    with open(p, "rb+") as f:
        out.append(f.write(b"XY"))
        out.append(f.read(2))
        out.append(f.tell())
    with open(p, "rb") as f:
        out.append(f.read())
    return out


def later_calls_see_the_writes(p):
    out = []
    with open(p, "wb") as f:
        out.append(f.write(b"x" * 100))
        out.append(os.stat(p).st_size)   # still in the file's buffer: 0, here as there
        f.flush()
        out.append(os.stat(p).st_size)
        out.append(f.write(b"y" * 20000))  # larger than the buffer: on disk at once
        out.append(os.stat(p).st_size)
        out.append(subprocess.run(["wc", "-c", p], capture_output=True, text=True).stdout.split()[0])
    out.append(subprocess.run(["wc", "-c", p], capture_output=True, text=True).stdout.split()[0])
    return out


def errors_python_raises_at_write(p):
    out = []
    with open(p, "w") as f:
        out.append(observe(f.write, b"bytes to a text file"))
        out.append(observe(f.write, 42))
        out.append(f.write("fine"))
    with open(p, "wb") as f:
        out.append(observe(f.write, "text to a binary file"))
        out.append(f.write(b"fine"))
    with open(p, "w", encoding="ascii") as f:
        out.append(observe(f.write, "caf\u00e9"))
        out.append(f.write("cafe"))
    with open(p, "w", encoding="ascii", errors="replace") as f:
        out.append(f.write("caf\u00e9"))
    with open(p) as f:
        out.append(f.read())
        out.append(observe(f.write, "read-only"))
    f = open(p, "a")
    f.write("x")
    f.close()
    out.append(observe(f.write, "closed"))
    out.append(observe(f.flush))
    with open(p) as f:
        out.append(f.read())
    return out


def a_file_removed_under_it(p):
    out = []
    with open(p, "w") as f:
        out.append(f.write("before"))
        os.remove(p)
        out.append(os.path.exists(p))
        out.append(f.write("after"))
        f.flush()
        out.append(os.fstat(f.fileno()).st_size)
    out.append(os.path.exists(p))
    return out


def a_closed_file_used_again(p):
    out = []
    with open(p, "w") as f:
        f.write("x")
    out.append(observe(f.write, "y"))
    with open(p) as f:
        out.append(f.read())
    out.append(f.closed)
    out.append(observe(f.read))
    return out


# Around the 1 KiB from which a str or bytes value crosses as a raw frame instead of inline CBOR
# (docs/protocol.md, "Values"), and the 64 KiB of the older limit.
SIZES = (0, 1, 1023, 1024, 1025, 4096, 65535, 65536, 70000)


def text_and_bytes_around_the_inline_threshold(p):
    out = []
    for n in SIZES:
        for text in ("a" * n, "\u00e9" * (n // 2) + "z" * (n % 2), ("\U0001f600" * n)[:n // 4]):
            with open(p, "w", encoding="utf-8") as f:
                out.append(f.write(text))
            with open(p, encoding="utf-8") as f:
                out.append(f.read() == text)
            out.append(os.stat(p).st_size)
        data = (bytes(range(256)) * (n // 256 + 1))[:n]
        with open(p, "wb") as f:
            out.append(f.write(data))
        with open(p, "rb") as f:
            back = f.read()
            out.append((len(back), back == data))
        with open(p, "r+b") as f:  # read and write on one file, each value around the threshold
            out.append(f.read(n // 2) == data[:n // 2])
            out.append(f.write(data[:n // 3]))
            f.seek(0)
            out.append(f.read())
    return out


def encodings_and_newline_translation(p):
    out = []
    text = ("line one\nzwei \u00e9\r\ntrois\rquatre \u20ac\n" * 60)[:2500]
    for encoding in ("utf-8", "utf-16", "latin-1", "utf-8-sig", "cp1252", "ascii"):
        for newline in (None, "", "\n", "\r\n", "\r"):
            with open(p, "w", encoding=encoding, errors="replace", newline=newline) as f:
                out.append(f.write(text))
            with open(p, "rb") as f:
                out.append(f.read())
            with open(p, encoding=encoding, errors="replace", newline=newline) as f:
                out.append(f.read())
                out.append(f.newlines)
    with open(p, "w", encoding="latin-1") as f:
        out.append(observe(f.write, "\u20ac" * 2000))  # UnicodeEncodeError at write(), as locally
        out.append(f.write("fine"))
    with open(p, encoding="latin-1") as f:
        out.append(f.read())
    return out


def lone_surrogates(p):
    out = []
    name = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")  # as a file name with bytes not UTF-8 comes
    for text in (name, name * 400, "ok\ud800" + "x" * 3000):
        for errors in ("surrogateescape", "surrogatepass", "strict", "backslashreplace"):
            with open(p, "w", encoding="utf-8", errors=errors) as f:
                out.append(observe(f.write, text))
            with open(p, "rb") as f:
                out.append(f.read())
            with open(p, encoding="utf-8", errors=errors) as f:
                back = observe(f.read)
                out.append(back)
                out.append(back == ("ok", text))
    return out


def errors_at_open(p):
    def opened(*args, **kwargs):  # the messages name p, which differs by its suffix here and there
        seen = observe(open, *args, **kwargs)
        return seen if seen[0] == "ok" else seen[:3] + (seen[3].replace(p, "P"),)

    out = []
    out.append(opened(os.path.dirname(p), "w"))
    out.append(opened(os.path.join(p, "no", "such"), "w"))
    out.append(opened(p + ".missing"))
    out.append(opened(p, "w", encoding="no-such-codec"))
    out.append(opened(p, "wz"))
    with open(p, "w", errors="no-such-handler") as f:   # looked up only when it is needed
        out.append(observe(f.write, "a" * 2000))
        out.append(observe(f.write, "\udcff" * 2000))
    with open(p) as f:
        out.append(f.read())
    return out


@pytest.mark.parametrize("scenario", [write_then_read_back, interleaved_reads_writes_seek_tell,
                                      later_calls_see_the_writes, errors_python_raises_at_write,
                                      a_file_removed_under_it, a_closed_file_used_again,
                                      text_and_bytes_around_the_inline_threshold, encodings_and_newline_translation,
                                      lone_surrogates, errors_at_open])
def test_user_code_sees_what_it_sees_locally(linux_box, tmp_path, scenario):
    local, remote = both(linux_box, scenario, tmp_path / scenario.__name__)
    assert remote == local


def test_w3_costs_four_round_trips(linux_box, tmp_path):
    p = str(tmp_path / "w3.txt")
    text = "splitbrain\n" * 372 + "0123"
    with linux_box:
        write_then_read_back(p)  # warm: the open helper is made once per slave
        before = linux_box.round_trips
        with open(p, "w") as f:
            f.write(text)
        assert linux_box.round_trips == before + 2  # open, close (the write's error would raise there)
        with open(p) as f:
            assert f.read() == text
        assert linux_box.round_trips == before + 4  # open, read; the close is pipelined
        assert os.path.getsize(p) == 4096           # the next call takes the close's reply
        assert linux_box.round_trips == before + 5


def test_chunked_writes_wait_only_when_the_window_is_full(linux_box, tmp_path):
    p = str(tmp_path / "chunks.bin")
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with linux_box:
        write_then_read_back(p)  # warm: the open helper is made once per slave
        before, sent = linux_box.round_trips, linux_box.requests
        with open(p, "wb") as f:
            for _ in range(16):
                assert f.write(chunk) == len(chunk)
        assert linux_box.requests - sent >= 18            # open, 16 writes, exit (and maybe releases)
        # open, exit, and one wait per write past the first 4 MiB in flight (the window)
        assert linux_box.round_trips - before == 2 + 16 - 4
        with open(p, "rb") as f:
            assert f.read() == chunk * 16


# ---- what only the slave's disk can say: RLIMIT_FSIZE on the worker ----

LIMIT = 50_000


@pytest.fixture
def limited_box(fresh_box):
    """A slave whose worker may write files of at most LIMIT bytes (EFBIG past it)."""
    remote_resource = fresh_box.modules.resource
    remote_resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))
    return fresh_box


def limited_locally(scenario, path):
    """The scenario in a child of ours with the same limit: what local Python observes."""
    result = run_python(f"""
        import resource, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, resource.RLIM_INFINITY))
        import test_pipelined_files as t
        print(repr(t.{scenario.__name__}({str(path)!r})))
    """)
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout)


def small_write_fails_at_close(p):
    out = []
    f = open(p, "wb")
    out.append(f.write(b"x" * (LIMIT - 10)))  # larger than the buffer: written through, fits
    out.append(f.write(b"y" * 100))           # buffered: fails only when flushed
    out.append(observe(f.close))
    out.append(f.closed)
    out.append(os.path.getsize(p))
    return out


def spilled_write_fails_at_the_next_call(p):
    out = []
    f = open(p, "wb")
    out.append(f.write(b"a" * 40_000))
    try:
        f.write(b"b" * 40_000)   # locally raises here; remotely at the next call on the file
        f.write(b"c" * 1000)     # remotely never runs: nothing after a failed write lands
        out.append(f.tell())
    except OSError as exc:
        out.append(("raised", type(exc).__name__, exc.errno))
    out.append(observe(f.close))
    out.append(os.path.getsize(p))
    with open(p, "rb") as g:
        out.append(b"c" in g.read())
    return out


def test_a_write_failing_on_close_raises_at_close(limited_box, tmp_path):
    p = tmp_path / "at-close.bin"
    local = limited_locally(small_write_fails_at_close, str(p) + ".local")
    with limited_box:
        remote = small_write_fails_at_close(str(p) + ".remote")
    assert remote == local
    assert local[2][:3] == ("raised", "OSError", errno.EFBIG)


def test_a_write_failing_later_raises_at_the_files_next_call_and_nothing_after_it_is_written(
        limited_box, tmp_path):
    p = tmp_path / "spill.bin"
    local = limited_locally(spilled_write_fails_at_the_next_call, str(p) + ".local")
    with limited_box:
        remote = spilled_write_fails_at_the_next_call(str(p) + ".remote")
    assert local[1] == ("raised", "OSError", errno.EFBIG)
    assert remote[1] == local[1]      # raised by tell(), the file's next call, instead of by write()
    assert remote[2:] == local[2:]    # the same bytes on disk: the third write did not run
    assert remote[-1] is False


def test_a_file_passed_to_a_call_is_no_longer_pipelined(fresh_box, tmp_path):
    p = str(tmp_path / "passed.txt")
    with fresh_box:
        f = open(p, "w")
        f.write("x")
        fresh_box.modules.builtins.getattr(f, "close")()   # closed by the slave, not through f
        with pytest.raises(ValueError, match="closed file"):
            f.write("y")   # raises at write(), as locally: the master no longer assumes the file open
        with open(p) as g:
            assert g.read() == "x"
