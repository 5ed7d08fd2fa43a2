"""The kernel's shutdown steps around Python's own finalisation.

Py_FinalizeEx joins every non-daemon thread without limit: a cell that started
threading.Thread(target=time.sleep, args=(60,)) would hold the kernel until jupyter_client loses
patience (5 s) and kills it. The threads get a grace instead, then Python's own exit steps run
except that join. A SIGINT (jupyter_client interrupts before it asks for shutdown) must not cut the
grace or an atexit handler short, nor be reported as ignored.
"""
import signal
import sys
import time


def ignore_interrupts():
    signal.signal(signal.SIGINT, lambda signum, frame: None)


def threads_outliving(grace):
    """The non-daemon threads still running after waiting up to `grace` seconds for them all."""
    threading = sys.modules.get("threading")
    if threading is None:
        return []
    deadline = time.monotonic() + grace
    main = threading.main_thread()
    waited = [t for t in threading.enumerate() if t is not main and not t.daemon]
    for thread in waited:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in waited if t.is_alive()]


def exit_without_joining():
    import atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
