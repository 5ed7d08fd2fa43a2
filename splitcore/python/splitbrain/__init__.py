"""splitbrain: one Python, many machines.

Code runs here (the *master*); what it does to the outside world — files, processes, sockets,
serial ports, VISA instruments — happens on the active *slave*, through the agent running there::

    import os, splitbrain
    box = splitbrain.connect("linux-box")   # a registry name, "tcp://host:port?key=…", or a connection file
    with box:                               # routed modules now act on linux-box
        os.getcwd()                         # linux-box's working directory
        from subprocess import Popen        # linux-box's Popen
        with splitbrain.local():            # the master again, inside
            os.getcwd()
    box.modules.os.getpid()                 # explicit access, whatever is active
    splitbrain.current()                    # the active slave, or None
    box.close()

Routed by default: ``os``, ``os.path``, ``subprocess``, ``socket``, ``shutil``, ``glob``,
``tempfile``, ``platform``, ``pathlib``, ``serial``, ``pyvisa``, ``usb``, ``open`` and ``io.open``;
add more with :func:`route`. Importing splitbrain installs the routing: outside any slave's context
routed modules are the real local ones (plus a few tens of nanoseconds per attribute).
"""

from . import _core
from ._context import activate, current, local
from ._audit import strict
from ._errors import (AgentKeyMismatch, AgentUnreachable, ClientStalled, KeyLimit, KeyRefused, Leased,
                      ModuleRefused, NothingListening, PlaceBusy, PlaceNotHeld, PlaceUnavailable,
                      ProtocolError, RemoteError, SessionLost, SlaveClosed, SlaveOnlyModuleError, SpawnError,
                      UnknownHost)
from ._proxy import RemoteCallable, RemoteDescriptor, RemoteMethod, RemoteModule, RemoteObject
from ._registry import client_keys, config_dir
from ._routing import route, routed_names
from ._slave import Slave, connect, forget, known_slaves, slave, slaves, spawn

__all__ = [
    "AgentKeyMismatch", "AgentUnreachable", "ClientStalled", "KeyLimit", "KeyRefused", "Leased", "ModuleRefused",
    "NothingListening", "PlaceBusy", "PlaceNotHeld", "PlaceUnavailable", "UnknownHost",
    "ProtocolError", "RemoteCallable", "RemoteDescriptor", "RemoteError", "RemoteMethod",
    "RemoteModule", "RemoteObject", "SessionLost", "Slave", "SlaveClosed", "SlaveOnlyModuleError",
    "SpawnError", "activate", "client_keys", "config_dir", "connect", "current", "forget",
    "known_slaves", "local", "route", "routed_names", "slave", "slaves", "spawn", "strict",
]

__version__ = "0.1.0"

from . import _routing  # noqa: E402  (installed last: everything above must hold the real modules)

_routing.install()

from . import _audit  # noqa: E402

_audit.install()
