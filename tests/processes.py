"""The processes of this machine, read from /proc, for tests that check what was left running."""

import os


def state(pid):
    """The process's state letter (b"R", b"S", b"Z", ...), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return None


def alive(pid):
    """True while the process exists and is not a zombie."""
    return state(pid) not in (None, b"Z")


def live_processes(argv_prefix):
    """Pids of the running (not zombie) processes whose argv starts with argv_prefix (bytes)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[:len(argv_prefix)] == argv_prefix and alive(entry):
            found.append(int(entry))
    return found
