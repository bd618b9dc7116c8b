"""Kill a real process group at a stage boundary seen from the outside: a line it prints, or a file event.

Nothing in edgeopt knows about this: the run is watched through its stdout (PYTHONUNBUFFERED) and
through inotify on its folders (Linux; ctypes, no extra package), and SIGKILLed from the thread that
sees the first sign of a boundary. The process keeps running for the microseconds between the sign
and the kill, so the exact state it leaves varies: the test asserts what must hold in every state.

Events are tuples: ("line", text), ("created", path), ("written", path), ("moved", path),
("deleted", path), and ("journal", what, moved) read from a journal the moment it appears.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import select
import signal
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_ISDIR = 0x8, 0x80, 0x100, 0x200, 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
JOURNAL = ".edgeopt-journal.json"


@dataclass
class Trigger:
    name: str
    matches: object  # callable(event) -> bool


def line(text):
    return Trigger(f"line {text.strip()!r}", lambda e: e[0] == "line" and text in e[1])


def file_event(kind, rel, root):
    path = str(Path(root) / rel)
    return Trigger(f"{kind} {rel}", lambda e: e[0] == kind and e[1] == path)


def created(prefix):
    """A file or folder whose name starts with `prefix` appears in any watched folder."""
    return Trigger(f"created {prefix}*", lambda e: e[0] == "created" and os.path.basename(e[1]).startswith(prefix))


def written_in_staging(suffix, root):
    staging = str(Path(root) / ".edgeopt-staging")
    return Trigger(f"staged *{suffix}", lambda e: e[0] in ("written", "moved") and e[1].startswith(staging)
                   and e[1].endswith(suffix))


def journal_moving(final):
    return Trigger(f"journal moving {final}", lambda e: e[0] == "journal" and final in e[2])


def any_journal():
    return Trigger("journal created", lambda e: e[0] == "journal")


class Run:
    """Start `argv` in its own process group; kill it at the first event matching one of `triggers`."""

    def __init__(self, argv, env, folders, triggers):
        self.triggers, self.fired, self.events = list(triggers), None, []
        self._lock = threading.Lock()
        self._stop = False
        self._inotify = _Inotify(folders)  # before the process starts: no early event is missed
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self._threads = [threading.Thread(target=self._read_lines, daemon=True),
                         threading.Thread(target=self._read_files, daemon=True)]
        for t in self._threads:
            t.start()

    def wait(self, timeout):
        try:
            self.proc.wait(timeout)
        finally:
            self._stop = True
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            for t in self._threads:
                t.join(5)
            self._inotify.close()
        _wait_for_group_to_die(self.proc.pid)
        return self.proc.returncode

    def output(self):
        return "\n".join(e[1] for e in self.events if e[0] == "line")

    def _see(self, event):
        with self._lock:
            self.events.append(event)
            if self.fired is not None:
                return
            for trigger in self.triggers:
                if trigger.matches(event):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.fired = trigger
                    return

    def _read_lines(self):
        for text in self.proc.stdout:
            self._see(("line", text.rstrip("\n")))

    def _read_files(self):
        while not self._stop:
            for event in self._inotify.read(0.05):
                self._see(event)
                if event[0] == "moved" and event[1].endswith(JOURNAL):
                    self._see(_journal_event(event[1]))


def _journal_event(path):
    try:
        journal = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return ("journal-gone", path)  # the swap ended before it could be read
    moved = [s["to"] for s in journal["steps"] if s["op"] == "move" and s["from"].startswith(".edgeopt-staging")]
    return ("journal", journal.get("what", ""), moved)


def _wait_for_group_to_die(pgid, timeout=30):
    """Children of the killed process (a converter child, bench workers) die with it; wait until they have."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process group {pgid} still alive {timeout}s after SIGKILL")


class _Inotify:
    """inotify on folders and every folder created below them (watches added as folders appear)."""

    MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE

    def __init__(self, folders):
        self.fd = _libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.paths = {}
        for folder in folders:
            self._watch(Path(folder))

    def _watch(self, folder: Path):
        wd = _libc.inotify_add_watch(self.fd, str(folder).encode(), self.MASK)
        if wd >= 0:
            self.paths[wd] = folder
            # Folders made inside it before the watch existed send no event: watch them now.
            for sub in (p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ():
                if sub not in self.paths.values():
                    self._watch(sub)

    def read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        buf = os.read(self.fd, 1 << 16)
        events, offset = [], 0
        while offset < len(buf):
            wd, mask, _cookie, size = struct.unpack_from("iIII", buf, offset)
            name = buf[offset + 16: offset + 16 + size].rstrip(b"\0").decode()
            offset += 16 + size
            folder = self.paths.get(wd)
            if folder is None or not name:
                continue
            path = folder / name
            if mask & IN_CREATE and mask & IN_ISDIR:
                self._watch(path)
            kind = ("created" if mask & IN_CREATE else "written" if mask & IN_CLOSE_WRITE else
                    "moved" if mask & IN_MOVED_TO else "deleted")
            events.append((kind, str(path)))
        return events

    def close(self):
        os.close(self.fd)
