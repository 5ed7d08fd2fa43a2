"""``%slaves --check``: the registry's preflight in a notebook (``splitbrain check`` on the command
line runs the same :func:`splitbrain._check.check`). A cell at the top of a notebook run by CI fails
at once, in one line per slave, instead of the first ``%%slave`` cell waiting for a dead agent."""

import argparse

from IPython.core.error import UsageError

from splitbrain import _check
from splitbrain._errors import error


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise error("usage", f"%slaves --check [--timeout S] [NAME ...]: {message}", UsageError)


def _parser():
    parser = _Parser(prog="%slaves --check", add_help=False)
    parser.add_argument("--check", action="store_true", required=True)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("names", nargs="*")
    return parser


def run_check(line):
    """Probe the slaves *line* names (``--check [--timeout S] [NAME ...]``), print one line each, and
    raise the ``slaves_down`` id when any is down."""
    args = _parser().parse_args(line.split())
    if args.timeout <= 0:
        raise error("usage", "%slaves --check: --timeout must be positive", UsageError)
    rows = _check.check(args.names, timeout=args.timeout)
    if not rows:
        print("no slaves registered (see `%slave connect NAME TARGET` or `splitbrain add NAME TARGET`)")
        return
    print("\n".join(_check.format_rows(rows)), flush=True)
    down = [row["name"] for row in rows if not row["up"]]
    if down:
        raise error("slaves_down", f"{len(down)} of {len(rows)} slaves are down: {', '.join(down)} "
                                   f"(probed with a {args.timeout:g} s timeout; see the lines above)",
                    ConnectionError)
