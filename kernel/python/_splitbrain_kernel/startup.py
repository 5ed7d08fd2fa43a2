"""What the kernel does to xeus-python's IPython shell once it is created."""
import importlib
import importlib.util
import os
import traceback

# Imported now, while sys.path is the kernel's own: at exit a cell may have changed it.
from . import shutdown  # noqa: F401


def run(shell, report):
    """report(detail) writes detail to the kernel's own stderr under the `kernel_extension_failed`
    id (descriptor 2 leads to the notebook by now)."""
    configure_matplotlib()
    report_error_names(shell)
    keep_interrupts_of_callbacks(shell)
    load_splitbrain_extension(shell, report)


def configure_matplotlib():
    # As ipykernel does: figures of plain `plt.plot(...)` appear inline.
    if "MPLBACKEND" not in os.environ and importlib.util.find_spec("matplotlib_inline") is not None:
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"


def report_error_names(shell):
    # xeus_python_shell 0.5 reports ename as str(etype), "<class 'KeyError'>"; the protocol (and
    # nbclient, and every frontend) expects the name, "KeyError".
    def _showtraceback(etype, evalue, stb):
        shell.last_error = [getattr(etype, "__name__", str(etype)), str(evalue), stb]

    shell._showtraceback = _showtraceback

    # IPython prints a UsageError (a mistake in a magic's arguments) to stderr and the cell would
    # end "ok"; report it as the cell's error, so frontends show it and nbconvert stops on it.
    def show_usage_error(exc):
        shell.last_error = ["UsageError", str(exc), [f"UsageError: {exc}"]]

    shell.show_usage_error = show_usage_error


def keep_interrupts_of_callbacks(shell):
    """IPython's EventManager.trigger catches a KeyboardInterrupt raised in a callback (prints it
    and goes on): an interrupt, or a shutdown's, that landed in a pre_run_cell callback (the
    kernel's own, splitbrain_kernel.progress) was lost and the cell then ran on uninterrupted.
    Here every callback still runs, errors are shown as IPython shows them, and an interrupt caught
    in one is raised once they all ran: the cell ends with KeyboardInterrupt."""
    events = shell.events

    def trigger(event, *args, **kwargs):
        interrupted = None
        for func in events.callbacks[event][:]:
            try:
                func(*args, **kwargs)
            except KeyboardInterrupt as e:
                interrupted = interrupted or e
            except Exception:
                if events.print_on_error:
                    print(f"Error in callback {func} (for {event}), with arguments args {args},kwargs {kwargs}:")
                shell.showtraceback()
        if interrupted is not None:
            raise interrupted

    events.trigger = trigger


_COLOURED_SCHEME = {}


def colour_tracebacks(shell, interactive):
    """IPython's colour scheme for tracebacks when *interactive*, else none (called by the kernel
    when a client that can or cannot answer input() runs a cell: see interpreter.hpp)."""
    for formatter in (shell.InteractiveTB, shell.SyntaxTB):
        table = formatter.color_scheme_table
        _COLOURED_SCHEME.setdefault(id(formatter), table.active_scheme_name)
        formatter.set_colors(_COLOURED_SCHEME[id(formatter)] if interactive else "NoColor")


def load_splitbrain_extension(shell, report):
    """Registers the splitbrain magics (%%slave, ...) when the splitbrain package is installed."""
    try:
        try:
            module = importlib.import_module("splitbrain_kernel")
        except ModuleNotFoundError as e:
            if e.name in ("splitbrain", "splitbrain_kernel"):
                return
            raise
        module.load_ipython_extension(shell)
        shell.extension_manager.loaded.add("splitbrain_kernel")
    except BaseException:
        report("splitbrain_kernel.load_ipython_extension failed; "
               "the kernel runs without the splitbrain magics:\n" + traceback.format_exc())
