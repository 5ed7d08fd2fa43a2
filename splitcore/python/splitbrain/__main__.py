"""The ``splitbrain`` command: the client's key, and a preflight of the registry.

    splitbrain key             create this machine's client key pair if needed; print its public key
    splitbrain add NAME TARGET connect to TARGET (a connection file or tcp://HOST:PORT?key=…) and
                               save it in the registry as NAME
    splitbrain check [NAME …]  connect to every registered slave (or the NAMEs), one line each;
                               exit status 1 if any is down (a CI preflight)
    splitbrain --version
"""

import argparse
import os
import sys

import splitbrain
from splitbrain import _check as _check_module
from splitbrain import _registry


def _key(args):
    public, _ = _registry.client_keys()
    if args.quiet:
        print(public)
        return 0
    print(public)
    print(f"# {os.path.join(_registry.config_dir(), 'client.pub')}; on the slave, authorize it with:\n"
          f"#   splitbrain-agent authorize {public} --authorized-keys ~/.splitbrain/authorized_keys",
          file=sys.stderr)
    return 0


def _add(args):
    box = splitbrain.connect(args.target, name=args.name, timeout=args.timeout, save=True)
    try:
        latency = box.ping()
        print(f"{args.name}: {box.address} answers in {latency * 1e3:.2f} ms; saved in "
              f"{os.path.join(_registry.config_dir(), 'slaves.json')}")
    finally:
        box.close()
    return 0


def _check(args):
    rows = _check_module.check(args.names, timeout=args.timeout)
    if not rows:
        print("no slaves registered (see `splitbrain add NAME TARGET` or `%slave connect NAME TARGET`)")
        return 0
    print("\n".join(_check_module.format_rows(rows)))
    return 0 if all(row["up"] for row in rows) else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="splitbrain", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"splitbrain {splitbrain.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    key = commands.add_parser("key", help="create (if needed) and print this client's public key")
    key.add_argument("-q", "--quiet", action="store_true", help="print only the key")
    key.set_defaults(run=_key)
    add = commands.add_parser("add", help="connect to TARGET and save it in the registry as NAME")
    add.add_argument("name", metavar="NAME")
    add.add_argument("target", metavar="TARGET")
    add.add_argument("--timeout", type=float, default=5.0, help="liveness timeout (s, default 5)")
    add.set_defaults(run=_add)
    check = commands.add_parser("check", help="probe registered slaves; exit 1 if any is down")
    check.add_argument("names", nargs="*", metavar="NAME")
    check.add_argument("--timeout", type=float, default=3.0, help="liveness timeout per slave (s, default 3)")
    check.set_defaults(run=_check)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (OSError, LookupError, ValueError, splitbrain.ProtocolError) as exc:
        # One line with its id, not a traceback: these are the user's to act on.
        print(f"splitbrain {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
