"""Completion and inspection that answer for the slave a cell acts on.

* ``?`` and Shift+Tab on a remote function show its signature, docstring, type and file as the
  slave's ``inspect`` module reports them, instead of the proxy's ``(*args, **kwargs)``;
* path completion inside a string lists the active slave's files;
* ``%slave connect NAME <Tab>`` completes registry names, then connection files (``*.json``).

IPython keeps its own references to ``glob.glob`` and ``os`` (it is exempt from routing: the
notebook's machinery acts on the master), so both are redirected here explicitly, while a slave is
active (a ``%%slave`` cell being completed, see ``context_for_cell``, or a sticky slave).
"""

import glob as _local_glob
import os
import re

from IPython.core.completer import SimpleCompletion, completion_matcher

import splitbrain
from splitbrain._proxy import RemoteMethod, RemoteModule, RemoteObject

_SUBCOMMANDS = ("local", "spawn", "connect", "forget")


# -- inspection ---------------------------------------------------------------------------------------

class RemoteDescription:
    """What the slave's ``inspect`` says about one remote object (a few round trips, once)."""

    def __init__(self, proxy):
        if isinstance(proxy, RemoteMethod):
            target = proxy._sb_resolve()
        elif isinstance(proxy, RemoteModule):
            target = proxy._sb_proxy
        else:
            target = proxy
        slave = target._sb_slave
        remote = slave.modules.inspect
        self.slave = slave.name
        self.type_name = getattr(target, "_sb_type", "object").rpartition(".")[2]
        self.string_form = repr(proxy)
        self.docstring = _quietly(lambda: remote.getdoc(target))
        self.signature = _quietly(lambda: str(remote.signature(target)))
        self.file = _quietly(lambda: remote.getfile(target))
        self.is_class = bool(_quietly(lambda: remote.isclass(target)))
        self.is_callable = callable(proxy) and not isinstance(proxy, RemoteModule)

    def fields(self, oname):
        """The inspector's info fields this description replaces."""
        fields = {
            "type_name": f"{self.type_name} (on {self.slave})",
            "string_form": self.string_form,
            "docstring": self.docstring if isinstance(self.docstring, str) else None,
            "file": f"{self.file} (on {self.slave})" if isinstance(self.file, str) else None,
            "definition": None, "init_definition": None, "call_def": None,
            "class_docstring": None, "init_docstring": None, "call_docstring": None,
            "base_class": None, "namespace": None, "length": None, "source": None,
        }
        if isinstance(self.signature, str):
            fields["init_definition" if self.is_class else "definition"] = (oname or "obj") + self.signature
        return fields

    @staticmethod
    def stand_in():
        """A local function for IPython's inspector to lay out as a function (its fields are ours)."""
        def stand_in(*args, **kwargs):
            pass
        return stand_in


def _quietly(ask):
    try:
        return ask()
    except Exception:  # the slave cannot say (no signature for a builtin, no file): leave it out
        return None


def describe(obj):
    """A RemoteDescription of *obj* if it is a slave's object, else None."""
    if not isinstance(obj, (RemoteMethod, RemoteModule, RemoteObject)):
        return None
    try:
        return RemoteDescription(obj)
    except Exception:  # a closed slave: the proxy's own, local description
        return None


def install_inspection(shell):
    """Make IPython's inspector (``obj?`` and inspect_request) describe remote objects remotely."""
    inspector = shell.inspector
    original_get_info = inspector._get_info
    original_info = inspector.info

    described_objects = {}  # id(object being described) → its RemoteDescription, while _get_info runs

    def info(obj, oname="", info=None, detail_level=0):
        out = original_info(obj, oname=oname, info=info, detail_level=detail_level)
        described = described_objects.get(id(obj))
        if described is not None:
            out.update(described.fields(oname))
        return out

    def _get_info(obj, oname="", formatter=None, info=None, detail_level=0, omit_sections=()):
        described = describe(obj)
        if described is None:
            return original_get_info(obj, oname, formatter, info, detail_level, omit_sections)
        if described.is_callable:
            # Laid out as a function (Signature, Docstring, File, Type), the fields filled by info().
            obj = described.stand_in()
        described_objects[id(obj)] = described
        try:
            return original_get_info(obj, oname, formatter, info, detail_level, omit_sections)
        finally:
            described_objects.pop(id(obj), None)

    inspector.info = info
    inspector._get_info = _get_info


# -- paths ---------------------------------------------------------------------------------------------

def routed_glob(pattern):
    """``glob.glob(pattern)`` on the active slave (directories marked with a trailing ``/``, as
    IPython's own check would mark local ones), or here when none is active."""
    slave = splitbrain.current()
    if slave is None:
        return _local_glob.glob(pattern)
    remote = slave.modules.glob
    found = remote.glob(pattern)
    directories = {d.rstrip("/") for d in remote.glob(pattern + "/")}
    return [f + "/" if f in directories else f for f in found]


def _connection_files(prefix):
    """Local paths starting with *prefix*: directories and ``*.json`` files (connection files)."""
    prefix = os.path.expanduser(prefix)
    found = []
    for path in sorted(_local_glob.glob(prefix + "*")):
        if os.path.isdir(path):
            found.append(path + "/")
        elif path.endswith(".json"):
            found.append(path)
    return found


# -- the magics' lines -----------------------------------------------------------------------------------

_MAGIC_LINE = re.compile(r"\s*(%%?)slave\s")


def slave_line_matches(line):
    """Completions for the word being typed at the end of *line*, a ``%slave``/``%%slave`` line:
    slave names (and the line magic's subcommands); after ``%slave connect``, registry names, then
    connection files; after ``%slave forget``, names. None when *line* is not such a line."""
    found = _MAGIC_LINE.match(line)
    if found is None:
        return None
    names = sorted(splitbrain.known_slaves())
    if found.group(1) == "%%":
        return names
    words = line.split()
    position = len(words) if line[-1:].isspace() else len(words) - 1
    word = "" if line[-1:].isspace() else words[-1]
    if position <= 1:
        candidates = names + sorted(_SUBCOMMANDS)
    elif words[1] == "connect" and position == 2:
        candidates = names
    elif words[1] == "connect" and position == 3:
        return _connection_files(word)
    elif words[1] == "forget" and position == 2:
        candidates = names
    else:
        candidates = []
    return [c for c in candidates if c.startswith(word)]


@completion_matcher(identifier="splitbrain_kernel.slave_line", api_version=2)
def slave_line_matcher(context):
    """IPython matcher (API v2) for the magics' lines; it alone answers there (Jedi would read
    ``%slave connect x build/c`` as a division and offer ``build/callable``)."""
    line = context.text_until_cursor
    if context.cursor_line != 0 and line.lstrip().startswith("%%"):
        line = ""  # a cell magic only counts on the cell's first line
    matches = slave_line_matches(line) if line else None
    if matches is None:
        return {"completions": [], "suppress": False}
    word = "" if line[-1:].isspace() else line.split()[-1]
    return {"completions": [SimpleCompletion(m, type="path" if "/" in m else "slave") for m in matches],
            "matched_fragment": word, "suppress": True}


def _install_paths(completer):
    completer.glob = routed_glob
    file_matches = completer.file_matches

    def slave_file_matches(text):
        matches = file_matches(text)
        if splitbrain.current() is None:
            return matches
        # IPython marks what is a directory *here* with a "/"; routed_glob marked the slave's.
        return [m[:-1] if m.endswith("//") else m for m in matches]

    completer.file_matches = slave_file_matches


def install(shell):
    """Inspection, path completion and the magics' line completion (called once, at load)."""
    install_inspection(shell)
    _install_paths(shell.Completer)
    shell.Completer.custom_matchers.insert(0, slave_line_matcher)
