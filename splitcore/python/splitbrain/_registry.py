"""Where splitbrain keeps what it knows: the client's key pair and the named slaves.

The directory is ``$SPLITBRAIN_CONFIG`` if set, else ``$XDG_CONFIG_HOME/splitbrain``, else
``~/.config/splitbrain``. In it:

* ``client.key`` — this client's CurveZMQ secret key (Z85, mode 0600), made on first use;
  ``client.pub`` — its public key, the line to add to an agent's ``--authorized-keys``;
* ``slaves.json`` — ``{"slaves": {NAME: {"address": "tcp://host:port", "public_key": Z85|null}}}``.

:func:`resolve` turns what ``splitbrain.connect()`` is given — a name of slaves.json, a connection
file, or ``tcp://HOST:PORT?key=…`` — into an address and the agent's public key.
"""

import _io
import json
import os
import tempfile
from urllib.parse import unquote

from . import _core, _errors

__all__ = ["client_keys", "config_dir", "entries", "forget", "resolve", "save"]


def config_dir():
    """The configuration directory (created, mode 0700, when first written)."""
    explicit = os.environ.get("SPLITBRAIN_CONFIG")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "splitbrain")


def _ensure_dir():
    directory = config_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return directory


_keys_read = {}  # directory -> (the key files' identity and times, (public, secret))


def _marks(*paths):
    """What says that a file is the one read before: its inode, size and modification time."""
    marks = []
    for path in paths:
        st = os.stat(path)
        marks.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(marks)


def client_keys():
    """This client's key pair ``(public, secret)``, created (secret file mode 0600) on first use.
    Read again only when a key file changed: each connect asks (issue 11 point 4)."""
    directory = _ensure_dir()
    secret_path = os.path.join(directory, "client.key")
    public_path = os.path.join(directory, "client.pub")
    read = _keys_read.get(directory)
    if read is not None:
        try:
            if _marks(secret_path, public_path) == read[0]:
                return read[1]
        except OSError:
            pass
    keys = _read_client_keys(secret_path, public_path)
    try:
        _keys_read[directory] = (_marks(secret_path, public_path), keys)
    except OSError:
        _keys_read.pop(directory, None)
    return keys


def _read_client_keys(secret_path, public_path):
    try:
        with _io.open(secret_path, encoding="ascii") as f:
            secret = f.read().strip()
    except FileNotFoundError:
        public, secret = _core.curve_keypair()
        try:
            fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return _read_client_keys(secret_path, public_path)
        with _io.open(fd, "w", encoding="ascii") as f:
            f.write(secret + "\n")
    if not _core.is_key(secret):
        raise _errors.error("bad_key", f"{secret_path} does not hold a Z85 CurveZMQ secret key; "
                                       "delete it to make a new key pair")
    public = _core.curve_public_key(secret)
    try:
        with _io.open(public_path, encoding="ascii") as f:
            stored = f.read().strip()
    except FileNotFoundError:
        stored = None
    if stored != public:
        _write_atomic(public_path, public + "\n", 0o644)
    return public, secret


def _write_atomic(path, text, mode):
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with _io.open(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def _slaves_path():
    return os.path.join(config_dir(), "slaves.json")


def entries():
    """``{name: {"address": ..., "public_key": ...}}`` from slaves.json (empty if there is none)."""
    try:
        with _io.open(_slaves_path(), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise _errors.error("bad_registry", f"{_slaves_path()} is not valid JSON: {exc}") from None
    slaves = data.get("slaves") if isinstance(data, dict) else None
    return dict(slaves) if isinstance(slaves, dict) else {}


def save(name, address, public_key):
    """Remember a slave under *name*."""
    _ensure_dir()
    known = entries()
    known[name] = {"address": address, "public_key": public_key}
    _write_atomic(_slaves_path(), json.dumps({"slaves": known}, indent=2, sort_keys=True) + "\n", 0o600)


def forget(name):
    """Remove *name* from the registry; True if it was there."""
    known = entries()
    if known.pop(name, None) is None:
        return False
    _write_atomic(_slaves_path(), json.dumps({"slaves": known}, indent=2, sort_keys=True) + "\n", 0o600)
    return True


def resolve(target):
    """*target* → ``(address, public key or None, default name)``.

    *target* is ``tcp://HOST:PORT?key=Z85`` (``?key=none``: a plain-text loopback agent; without
    ``key=``, the entry of slaves.json with that address gives it; the name is ``HOST:PORT``), the
    path of an agent's connection file (the name is its ``"name"`` or the file's name), or a name
    of slaves.json."""
    if "://" in target:
        return _resolve_address(target)
    if os.path.isfile(target):
        return _resolve_connection_file(target)
    entry = entries().get(target)
    if entry is None:
        known = ", ".join(sorted(entries())) or "none"
        looks_like_a_name = "/" not in target and not target.endswith(".json")
        hint = (f"; add it with `splitbrain add {target} connection.json` (the agent's connection file)"
                if looks_like_a_name else "")
        raise _errors.error("unknown_slave", f"{target!r} is not a registered slave name (known: {known}), "
                                             f"a connection file, or tcp://HOST:PORT?key=KEY{hint}")
    return entry["address"], entry.get("public_key"), target


def _resolve_address(target):
    # Z85 keys hold '?', '&', '#' and '/': the key is everything after "?key=", taken literally.
    address_part, has_key, key = target.partition("?key=")
    scheme, _, netloc = address_part.partition("://")
    host, _, port = netloc.rpartition(":")
    if scheme != "tcp" or not host or not port.isdigit() or "/" in netloc or "?" in netloc:
        raise _errors.error("bad_target", f"{target!r}: an address is tcp://HOST:PORT[?key=Z85]")
    address = f"tcp://{netloc}"
    if has_key:
        if len(key) != 40 and "%" in key:
            key = unquote(key)
        if key in ("none", "null", ""):
            return address, None, netloc
        if not _core.is_key(key):
            raise _errors.error("bad_key", f"{target!r}: key= is not a Z85 CurveZMQ public key")
        return address, key, netloc
    for entry_name, entry in entries().items():
        if entry.get("address") == address:
            return address, entry.get("public_key"), entry_name
    raise _errors.error("unknown_agent_key",
                        f"no public key for {address}: add ?key=<the agent's agent.pub> (or ?key=none for an "
                        f"--insecure loopback agent), use its connection file, or register it with "
                        f"splitbrain.connect(..., name=NAME, save=True)")


def _resolve_connection_file(path):
    with _io.open(path, encoding="utf-8") as f:
        try:
            info = json.load(f)
        except ValueError as exc:
            raise _errors.error("bad_target", f"{path} is not a JSON connection file: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("address"), str) or "public_key" not in info:
        raise _errors.error("bad_target", f"{path}: a connection file holds "
                                          '{"address": ..., "public_key": ...}')
    default = info.get("name") or os.path.splitext(os.path.basename(path))[0]
    return info["address"], info["public_key"], default
