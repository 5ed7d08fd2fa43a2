"""Remote files opened with ``open()`` inside a slave's context: small writes pipelined.

A local ``BufferedWriter`` keeps small writes in its buffer and reports what only the disk can say
(ENOSPC, EIO) when the buffer spills, at ``flush()`` or at ``close()``. A remote file's small
writes are sent the same way, without waiting for their replies (docs/protocol.md, "Pipelined
writes"), so ``with open(p, "w") as f: f.write(text)`` costs two round trips, the open and the
close. What the master can tell itself still raises at ``write()``: a ``str`` for a text file is
encoded here with the file's encoding and error handler (``UnicodeEncodeError``), anything but
``str`` / ``bytes`` goes the ordinary way (the slave's ``TypeError``), a closed or read-only file is
never pipelined. What only the slave can tell raises at the file's next call, at a window's spill
(``WINDOW`` bytes in flight) or at ``close()``; the worker runs nothing on the file after a failed
write. Order is the session's: any later call to that slave (``os.stat`` of the path, a subprocess
reading the file) comes after the writes. The close of a file only read is pipelined too (``with
open(p) as f: f.read()`` costs two round trips); if it fails, the next call to that slave raises.
"""

import codecs

__all__ = ["Facts", "WINDOW", "open_file", "pipelined_write"]

# A write up to this size is pipelined; a larger one waits for its reply (and raises there), as a
# local BufferedWriter writes a chunk larger than its buffer at once.
LARGEST = 1 << 20
# Bytes of pipelined writes in flight on one file before the oldest replies are waited for.
WINDOW = 4 << 20

_ERROR_HANDLERS = frozenset({"strict", "ignore", "replace", "backslashreplace", "surrogateescape",
                             "surrogatepass", "xmlcharrefreplace", "namereplace"})

# Made on the slave once per slave (our text, never the user's): open() and what the master needs
# to know of the file to pipeline its writes, in one round trip. Its frame is named as the worker's
# own call stub ("<splitbrain>", line 1, "<module>"), which tracebacks leave out.
_OPEN_AND_DESCRIBE_BODY = (
    "lambda *a, **k: (lambda f: (f, getattr(f, 'encoding', None), getattr(f, 'errors', None), "
    "__import__('os').fstat(f.fileno()).st_mode & 0o170000 == 0o100000))(open(*a, **k))")
_OPEN_AND_DESCRIBE = (
    "(lambda g: setattr(g, '__code__', g.__code__.replace(co_name='<module>', co_qualname='<module>')) or g)"
    f"(eval(compile({_OPEN_AND_DESCRIBE_BODY!r}, '<splitbrain>', 'eval')))")


class Facts:
    """What the master knows of a remote file it may pipeline writes to. Immutable, so one serves
    every file opened with the same mode, encoding and error handler (_facts)."""

    __slots__ = ("writable", "text", "encoding", "errors", "ascii_safe")

    def __init__(self, writable, text, encoding, errors, ascii_safe):
        self.writable = writable
        self.text = text
        self.encoding = encoding  # text files: data.encode(encoding, errors) raises what the remote write would
        self.errors = errors
        self.ascii_safe = ascii_safe  # an encoding in which every ASCII str encodes (utf-8, latin-1, ascii)

    def size(self, data):
        """The size of a write that may be pipelined, raising here what the remote write() would
        raise at once; None if it must go the ordinary way."""
        if not self.writable:  # the slave's write raises io.UnsupportedOperation
            return None
        if self.text:
            if type(data) is not str or len(data) > LARGEST:
                return None
            if not (self.ascii_safe and data.isascii()):  # isascii() is O(1) for a str
                data.encode(self.encoding, self.errors)  # stateless: its errors do not depend on what went before
            return len(data)
        if type(data) is not bytes or len(data) > LARGEST:
            return None
        return len(data)


# Encodings (codecs' canonical names) in which no ASCII text can fail to encode.
_ASCII_SAFE = frozenset({"utf-8", "ascii", "iso8859-1", "cp1252", "utf-8-sig"})
_known_facts = {}  # (mode, encoding, errors) → Facts; bounded


def _facts(mode, encoding, errors, regular):
    if not regular:  # a pipe, a device, a socket: a write may block or return short
        return None
    key = (mode, encoding, errors)
    found = _known_facts.get(key)
    if found is not None:
        return found
    writable = any(c in mode for c in "wax+")
    text = "b" not in mode
    ascii_safe = False
    if text and writable:
        if errors not in _ERROR_HANDLERS or not isinstance(encoding, str):
            return None
        try:
            ascii_safe = codecs.lookup(encoding).name in _ASCII_SAFE
        except LookupError:  # a codec the slave has and we lack: its write decides
            return None
    found = Facts(writable, text, encoding, errors, ascii_safe)
    if len(_known_facts) < 256:
        _known_facts[key] = found
    return found


def _opener(slave):
    found = slave.__dict__.get("_sb_open_and_describe")
    if found is None:
        try:
            found = slave._builtin("eval")(_OPEN_AND_DESCRIBE, {})
        except Exception:  # a limited key, an odd slave: open() as it always was
            found = False
        slave.__dict__["_sb_open_and_describe"] = found
    return found


def open_file(slave, file, mode, kwargs):
    """``open(file, mode, **kwargs)`` on *slave*; a buffered regular file is set up for pipelined
    writes (one round trip either way)."""
    __tracebackhide__ = True
    describe = None
    if isinstance(mode, str) and kwargs.get("buffering", -1) != 0 and "opener" not in kwargs:
        describe = _opener(slave)
    if describe is None or describe is False:  # not `not describe`: that would ask the slave
        return slave._builtin("open")(file, mode, **kwargs)
    f, encoding, errors, regular = describe(file, mode, **kwargs)
    facts = _facts(mode, encoding, errors, regular)
    if facts is not None:
        slave._conn.pipeline(f._sb_oid, facts)
    return f


def pipelined_write(proxy, facts, args, kwargs):
    """``proxy.write(*args)``: sent without waiting when it may be; None when it must wait."""
    __tracebackhide__ = True
    if len(args) != 1 or kwargs:
        return None
    size = facts.size(args[0])
    if size is None:
        return None
    oid = proxy._sb_oid
    proxy._sb_slave._conn.pipe(oid, "call", {"o": oid, "path": ["write"], "a": args}, size, WINDOW)
    return size
