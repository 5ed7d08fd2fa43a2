"""The kernel's magics: ``%%slave``, ``%slave``, ``%%local`` and ``%slaves``.

They are IPython magics rather than a parser of our own in C++: xeus-python hands every cell to
IPython's shell, which already splits ``%%`` cells, parses arguments (``magic_arguments``), reports
``UsageError`` the way users know, serves ``%slave?`` from the docstrings and completes magic names.
Parsing in C++ would mean intercepting cells before the shell and redoing all of that.
"""

import argparse
import ast
import builtins
import functools
import html
import sys
import threading
import time

from IPython.core import interactiveshell
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

import splitbrain
from splitbrain._errors import error

from . import _actions, progress
from .comm import channel
from .fan_out import FanOutView
from . import completion, preflight, tracebacks

_RESERVED = {"local", "spawn", "connect", "forget", "lease", "unlease"}


class FanOutError(Exception):
    """Some slaves of a fan-out (``%%slave a b``) failed; ``errors`` maps slave name → exception."""

    def __init__(self, message, errors=None):
        super().__init__(message)
        self.errors = dict(errors or {})


_usage = _actions.usage
_unknown_slave = _actions.unknown_slave
_resolve = _actions.resolve


class _ThreadDemux:
    """A stream that sends each fan-out thread's writes to that thread's area (fan_out.py).

    Writes from any other thread (and from the cell's own thread) go to the real stream, so output
    of unrelated threads is not swallowed while a fan-out cell runs.
    """

    def __init__(self, real, buffers, which):
        self._real = real
        self._buffers = buffers
        self._which = which

    def write(self, text):
        buf = self._buffers.get(threading.get_ident())
        if buf is None:
            return self._real.write(text)
        buf.append((self._which, text))
        return len(text)

    def flush(self):
        self._real.flush()

    def __getattr__(self, name):
        return getattr(self._real, name)


class _SlavesTable:
    """What ``%slaves`` shows: an HTML table in JupyterLab, aligned text elsewhere."""

    columns = ("name", "address", "platform", "python", "latency", "state", "leases")

    def __init__(self, rows):
        self.rows = rows

    def _cells(self, row):
        latency = row.get("latency")
        return [
            row.get("name", ""), row.get("address", ""), row.get("platform") or "",
            row.get("python") or "",
            f"{latency * 1e3:.2f} ms" if isinstance(latency, (int, float)) else "",
            row.get("state", ""),
            "; ".join(_describe_lease(l) for l in row.get("leases") or ()),
        ]

    def _repr_html_(self):
        head = "".join(f"<th>{c}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in self._cells(r)) + "</tr>"
            for r in self.rows)
        return f"<table class='splitbrain-slaves'><tr>{head}</tr>{body}</table>"

    def __repr__(self):
        table = [list(self.columns)] + [[str(v) for v in self._cells(r)] for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.columns))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in table]
        if not self.rows:
            lines.append("(no slaves: `%slave spawn NAME` or `%slave connect NAME TARGET`)")
        return "\n".join(lines)


def _describe_lease(lease):
    """'ASRL/dev/ttyUSB0::INSTR: alice@lab-pc until 12:02' (the resource '' is the whole slave)."""
    until = time.strftime("%H:%M", time.localtime(lease["until"])) if lease.get("until") else "session end"
    what = lease.get("resource") or "whole slave"
    mine = " (you)" if lease.get("mine") else ""
    return f"{what}: {lease.get('holder')}{mine}{' shared' if lease.get('shared') else ''} until {until}"


@magics_class
class SlaveMagics(Magics):
    """``%%slave``, ``%slave``, ``%%local``, ``%slaves``."""

    def __init__(self, shell):
        super().__init__(shell)
        self._sticky_token = None

    # -- running a cell ---------------------------------------------------------------------------

    def _compile_cell(self, cell):
        """Cell text → (statements code, last-expression code or None), with linecache entries so
        tracebacks show the cell's lines."""
        source = self.shell.transform_cell(cell)
        tree = ast.parse(source)
        filename = self.shell.compile.cache(source, self.shell.execution_count, raw_code=cell)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = compile(ast.Expression(tree.body.pop().value), filename, "eval")
        body = compile(tree, filename, "exec")
        return body, last

    def _run(self, code):
        __tracebackhide__ = True  # noqa: F841 — IPython hides this frame in tracebacks
        body, last = code
        ns = self.shell.user_ns
        exec(body, ns)  # noqa: S102 — this is the user's cell, run as IPython would run it
        return eval(last, ns) if last is not None else None  # noqa: S307

    # -- %slave / %%slave ---------------------------------------------------------------------------

    @magic_arguments()
    @argument("-o", "--out", metavar="VAR",
              help="store each slave's value of the cell's last expression in VAR, a dict "
                   "{slave name: value}")
    @argument("names", nargs="*", metavar="NAME",
              help="slave(s) to run on; several run in parallel, one thread each")
    @line_cell_magic
    def slave(self, line, cell=None):
        """Run code on a slave machine: its os, subprocess, open, socket, serial, pyvisa act there.

        Cell magic::

            %%slave bench-a
            import os, subprocess
            print(os.getcwd())                          # bench-a's working directory
            out = subprocess.check_output(["uname", "-n"])   # `out` lives in the notebook

            %%slave bench-a bench-b -o hosts
            import platform
            platform.node()       # runs on both in parallel; hosts == {"bench-a": ..., "bench-b": ...}

        With several names the cell runs once per slave, in parallel; each slave's output shows as
        it is produced in an output area of its own, under a state line (``[NAME] running``,
        ``done in 1.2 s``, ``failed (its error id) in 0.3 s``), and one slave's failure (an error,
        or an agent that cannot be reached) does not hide the others; ``-o VAR`` then holds the
        values of the slaves that succeeded, and the cell ends with ``FanOutError`` naming those
        that failed.

        Line magic::

            %slave bench-a                      make bench-a active for the following cells
            %slave local                        back to this machine
            %slave spawn NAME                   start a private agent here and register it as NAME
            %slave connect NAME TARGET          connect TARGET and register it as NAME; TARGET is
                                                the agent's connection.json, or
                                                tcp://HOST:PORT?key=AGENT_PUB (its agent.pub)
            %slave forget NAME                  close NAME and remove it from the registry
            %slave lease NAME [RESOURCE ...] [--for 2h] [--shared]
                                                lease NAME (or VISA resources / serial ports on
                                                it) for this kernel's session: other keys get
                                                splitbrain.Leased naming you; %slaves shows it
            %slave unlease NAME                 end the leases %slave lease took on NAME

        ``%%local`` runs one cell here whatever is active; ``%slaves`` lists the slaves.
        """
        __tracebackhide__ = True  # noqa: F841 — a failing cell shows its own frames, not ours
        if cell is None:
            return self._slave_line(line)
        args = self._parse_cell_line(line)
        if not args.names:
            raise _usage("%%slave needs at least one slave name, "
                             "e.g. `%%slave bench-a`")
        for name in args.names:
            if name in _RESERVED:
                raise _usage(f"{name!r} is a subcommand of the line magic "
                                 f"%slave, not a slave name")
        code = self._compile_cell(cell)
        if len(args.names) == 1:
            slave = _resolve(args.names[0])
            with channel.cell(args.names), slave:
                value = self._run(code)
            if args.out:
                self.shell.user_ns[args.out] = {slave.name: value}
                return None
            return value
        known = set(splitbrain.known_slaves())
        for name in args.names:
            if name not in known and not name.startswith("place:"):  # a labgrid place connects when used
                raise _unknown_slave(name)
        # Connecting is part of each slave's run, so one unreachable agent fails only its own part.
        with channel.cell(args.names):
            values, errors = self._fan_out(args.names, code)
        if args.out:
            self.shell.user_ns[args.out] = values
        if errors:
            failed = ", ".join(errors)
            exc = error("fan_out_failed", f"{len(errors)} of {len(args.names)} slaves failed: {failed}",
                        lambda text: FanOutError(text, errors))
            raise exc
        return None

    def _parse_cell_line(self, line):
        """The %%slave line's arguments. Plain names (the common case, `%%slave bench-a`) skip
        argparse, which is a tenth of a millisecond of a trivial cell's cost; anything with an
        option or a quote takes the parser's way."""
        words = line.split()
        if not any(w.startswith("-") for w in words) and not any(q in line for q in "'\"\\"):
            return argparse.Namespace(out=None, names=words)
        return parse_argstring(self.slave, line)

    # Once interrupted, how long a fan-out waits for its slaves' cancelled calls to come back
    # before it raises KeyboardInterrupt anyway (the bound for the whole cell is 1 s).
    _CANCEL_GRACE = 0.5

    def _fan_out(self, names, code):
        """Run *code* once per slave name, in parallel → ({name: value} of those that succeeded,
        {name: exception} of those that failed), each slave's output shown live in its own area."""
        view = FanOutView(names)
        buffers = {}
        connected = {}
        finished = threading.Event()

        def run(name):
            area = view.areas[name]
            buffers[threading.get_ident()] = area.chunks
            try:
                slave = connected[name] = splitbrain.slave(name)
                with slave:
                    value = self._run(code)
                area.succeed(value)
            except BaseException as exc:  # shown in its area, per slave; never hides the others
                area.fail(exc)
            finally:
                finished.set()

        real_out, real_err = sys.stdout, sys.stderr
        sys.stdout = _ThreadDemux(real_out, buffers, "out")
        sys.stderr = _ThreadDemux(real_err, buffers, "err")
        threads = [threading.Thread(target=run, args=(n,), name=f"slave-{n}", daemon=True)
                   for n in names]
        try:
            for t in threads:
                t.start()
            # A short timeout: SIGINT may land on another thread, and then only the timeout
            # lets this one see the KeyboardInterrupt.
            while any(area.ended is None for area in view.areas.values()):
                finished.wait(0.05)
                finished.clear()
                view.refresh()
            view.refresh()
        except KeyboardInterrupt:
            for slave in list(connected.values()):
                slave.cancel_all()
            deadline = time.monotonic() + self._CANCEL_GRACE
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            for area in view.areas.values():
                if area.ended is None:
                    area.fail(KeyboardInterrupt())
            view.refresh()
            raise
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        values = {n: a.value for n, a in view.areas.items() if a.error is None}
        errors = {n: a.error for n, a in view.areas.items() if a.error is not None}
        return values, errors

    def _slave_line(self, line):
        words = line.split()
        if not words:
            active = splitbrain.current()
            return f"active: {active.name if active else 'local'}"
        verb, rest = words[0], words[1:]
        if verb == "local" and not rest:
            print(_actions.activate_local())
            return None
        if verb == "spawn":
            self._expect(rest, 1, "%slave spawn NAME")
            print(_actions.spawn(rest[0]))
            return None
        if verb == "connect":
            self._expect(rest, 2, "%slave connect NAME TARGET")
            print(_actions.connect(rest[0], rest[1]))
            return None
        if verb == "lease":
            parser = argparse.ArgumentParser(prog="%slave lease", add_help=False)
            parser.add_argument("name")
            parser.add_argument("resources", nargs="*")
            parser.add_argument("--for", dest="for_")
            parser.add_argument("--shared", action="store_true")
            try:
                args = parser.parse_args(rest)
            except SystemExit:
                raise _usage("usage: %slave lease NAME [RESOURCE ...] [--for 2h] [--shared]") from None
            print(_actions.lease(args.name, args.resources, args.for_, args.shared))
            return None
        if verb == "unlease":
            self._expect(rest, 1, "%slave unlease NAME")
            print(_actions.unlease(rest[0]))
            return None
        if verb == "forget":
            self._expect(rest, 1, "%slave forget NAME")
            print(_actions.forget(rest[0]))
            return None
        if rest:
            raise _usage(f"%slave takes one slave name (or a subcommand: "
                             f"local, spawn, connect, forget, lease, unlease), got {line!r}")
        print(_actions.activate(verb))
        return None

    @staticmethod
    def _expect(rest, n, usage):
        if len(rest) != n:
            raise _usage(f"usage: {usage}")

    # -- %%local, %slaves -------------------------------------------------------------------------

    @cell_magic
    def local(self, line, cell):
        """Run this cell on the master (this machine), whatever slave is active.

        Example::

            %slave bench-a
            ...
            %%local
            import os
            os.getcwd()           # the notebook machine's cwd
        """
        __tracebackhide__ = True  # noqa: F841
        if line.strip():
            raise _usage("%%local takes no arguments")
        code = self._compile_cell(cell)
        with splitbrain.local():
            return self._run(code)

    @line_magic
    def slaves(self, line):
        """List known and connected slaves: name, address, platform, Python, latency, state.

        Example::

            %slaves
            %slaves --check [--timeout S] [NAME ...]   connect to each (default: every registered
                                                       slave), one line each; fails if any is down
        """
        if line.split()[:1] == ["--check"]:
            return preflight.run_check(line)
        if line.strip():
            raise _usage("%slaves takes no arguments")
        return _SlavesTable(splitbrain.slaves())


def _locally(function):
    @functools.wraps(function)
    def run_locally(*args, **kwargs):
        with splitbrain.local():
            return function(*args, **kwargs)
    return run_locally


def load_ipython_extension(shell):
    """Register the magics (called by splitbrain-kernel at start, or `%load_ext splitbrain_kernel`)."""
    shell.register_magics(SlaveMagics)
    channel.register(shell)  # the JupyterLab extension's comm (labextension/)
    progress.register(shell)  # "waiting on bench-a: subprocess.run(…) 3.4 s" under a long call
    # IPython puts its own `open` into the user namespace, bound to io.open when IPython was
    # imported; the cells' `open` must be the routed builtin, like every other module's.
    if shell.user_ns.get("open") is interactiveshell._modified_open:
        shell.user_ns["open"] = builtins.open
    tracebacks.install(shell)  # compact errors: the user's frames and the slave's, not ours
    # Tracebacks are formatted from this machine's sources (linecache, inspect.getmodule), so
    # the formatter runs locally even while a sticky slave (`%slave NAME`) is active; otherwise
    # inspect's probing of every module (`hasattr(usb, "__file__")`) goes to the slave, and a
    # module the slave lacks turns the cell's error into "Unexpected exception formatting".
    for formatter in (shell.InteractiveTB, shell.SyntaxTB):
        formatter.structured_traceback = _locally(formatter.structured_traceback)
    completion.install(shell)
    # Jedi stays on for local cells. Jedi infers types by walking every attribute of what it
    # completes; on a slave's routed module that is one round trip per name, so completions in a
    # slave's context (`%%slave NAME` cells, a sticky slave) switch it off for their extent and use
    # IPython's own completer, which asks once through dir(): see context_for_cell.
