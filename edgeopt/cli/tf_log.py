"""Commands that run TensorFlow keep its console output in OUT/edgeopt.log (live too with --verbose)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..console import LOG_NAME, native_output_captured
from ..fileio import check_writable_dir


def add_verbose_flag(parser):
    parser.add_argument("--verbose", action="store_true",
                        help=f"also show TensorFlow's own log lines and warnings (always kept in OUT/{LOG_NAME})")


def tensorflow_output_kept(out, verbose):
    """A context for the TensorFlow work of one command: its native output appended to `out`/edgeopt.log."""
    path = Path(check_writable_dir(out)) / LOG_NAME
    with open(path, "a") as f:  # runs into the same folder add up; each says what it was
        f.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} edgeopt {' '.join(sys.argv[1:])}\n")
    return native_output_captured(path, verbose)


def where_the_log_is(out, verbose) -> str:
    shown = "shown above and kept" if verbose else "kept"
    return f"TensorFlow's own messages and warnings are {shown} in {Path(out) / LOG_NAME}" + (
        "" if verbose else " (--verbose shows them)")
