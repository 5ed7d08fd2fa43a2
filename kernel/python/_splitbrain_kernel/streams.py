"""sys.stdout and sys.stderr of the kernel, writing into its C++ output buffer."""
import io
import sys


class KernelStream(io.TextIOBase):
    """sys.stdout / sys.stderr of the splitbrain kernel.

    Any thread may write. Text reaches the frontend coalesced: at most 50 ms after it was
    written, at once when 64 KiB are pending, on flush(), and always before the cell's result,
    a display, an input() prompt and the end of the cell. fileno() is the kernel process's own
    descriptor (for faulthandler and subprocesses), which does not lead to the notebook.
    """

    def __init__(self, name, stream_id, fd, write, flush):
        super().__init__()
        self._name = name
        self._id = stream_id
        self._fd = fd
        self._write = write
        self._flush = flush

    @property
    def name(self):
        return "<%s>" % self._name

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fd

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        self._write(self._id, s)
        return len(s)

    def flush(self):
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        self._flush()


def install(write, flush):
    """Makes sys.stdout and sys.stderr KernelStreams: write(stream_id, text) with stream_id 0 for
    stdout and 1 for stderr, flush() for both."""
    sys.stdout = KernelStream("stdout", 0, 1, write, flush)
    sys.stderr = KernelStream("stderr", 1, 2, write, flush)
