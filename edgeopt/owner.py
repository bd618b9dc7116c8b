"""Which process made a temporary file or folder, and whether it still runs. Standard library only.

Leftovers are swept only when their owner is gone, so a concurrent run's live work survives. A
process is named by its pid and its start time (field 22 of /proc/PID/stat, in clock ticks since
boot): a pid the system has since given to another process does not look alive. Where /proc is
missing (macOS) the pid alone decides. Files made on another host (a shared disk) count as alive.

Example:
    >>> me = current()
    >>> alive(me)
    True
"""

from __future__ import annotations

import os
import secrets
import socket
import time


def start_ticks(pid: int) -> str | None:
    """The process's start time from /proc, or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields after the last ')' are plain.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def current() -> dict:
    pid = os.getpid()
    return {"pid": pid, "start": start_ticks(pid), "host": socket.gethostname()}


def tag() -> str:
    """`<pid>.<start>`: what temp-folder names carry, so a sweeper can tell whose they are."""
    me = current()
    return f"{me['pid']}.{me['start'] or 0}"


def parse_tag(text: str) -> dict | None:
    pid, _, start = text.partition(".")
    if not pid.isdigit():
        return None
    return {"pid": int(pid), "start": start if start and start != "0" else None}


def alive(owner: dict) -> bool:
    host = owner.get("host")
    if host and host != socket.gethostname():
        return True  # another machine's process: it cannot be checked from here, so it is kept
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process with that pid exists
    started = owner.get("start")
    now = start_ticks(pid)
    return not (started and now and started != now)


def new_run_id() -> str:
    """A run's id: UTC time, pid and a few random digits (two runs may start in the same second)."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}-{secrets.token_hex(2)}"
