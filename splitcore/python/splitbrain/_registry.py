"""Where splitbrain keeps what it knows: the client's key pair and the named slaves.

The directory is ``$SPLITBRAIN_CONFIG`` if set, else ``$XDG_CONFIG_HOME/splitbrain``, else
``~/.config/splitbrain``. In it:

* ``client.key`` — this client's CurveZMQ secret key (Z85, mode 0600), made on first use;
  ``client.pub`` — its public key, the line to add to an agent's ``--authorized-keys``;
* ``slaves.json`` — ``{"slaves": {NAME: {"address": "tcp://host:port", "public_key": Z85|null}}}``.
"""

import _io
import json
import os
import tempfile

from . import _core

__all__ = ["client_keys", "config_dir", "entries", "forget", "save"]


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


def client_keys():
    """This client's key pair ``(public, secret)``, created (secret file mode 0600) on first use."""
    directory = _ensure_dir()
    secret_path = os.path.join(directory, "client.key")
    public_path = os.path.join(directory, "client.pub")
    try:
        with _io.open(secret_path, encoding="ascii") as f:
            secret = f.read().strip()
    except FileNotFoundError:
        public, secret = _core.curve_keypair()
        try:
            fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return client_keys()
        with _io.open(fd, "w", encoding="ascii") as f:
            f.write(secret + "\n")
    if not _core.is_key(secret):
        raise ValueError(f"[splitbrain.bad_key] {secret_path} does not hold a Z85 CurveZMQ secret key; "
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
        raise ValueError(f"[splitbrain.bad_registry] {_slaves_path()} is not valid JSON: {exc}") from None
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
