"""The `edgeopt` command: a thin shell over the Python API. Exit codes: 0 ok, 1 an artifact failed, 2 bad input.

Each subcommand lives in its own module with an `add(subparsers)` that registers it.
"""

from __future__ import annotations

import argparse
import signal
import sys

from ..errors import EdgeoptError
from . import bench, convert, demo, formats, survey, target, verify

COMMANDS = [convert, bench, verify, formats, demo, survey, target]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # SIGTERM (a CI time-out, `kill`) becomes an exit we control: temp folders and staged work are removed.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.func(args) or 0
    except EdgeoptError as e:
        print(f"edgeopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeopt: interrupted; finished files and reports are kept", file=sys.stderr)
        return 130


def build_parser():
    parser = argparse.ArgumentParser(prog="edgeopt", description=__doc__.split(":")[0])
    sub = parser.add_subparsers(metavar="command")
    for command in COMMANDS:
        command.add(sub)
    return parser


def _exit_on_sigterm(signum, _frame):
    print("edgeopt: terminated; finished files and reports are kept", file=sys.stderr)
    sys.exit(128 + signum)
