"""Our files in the system temp folder: one private folder per process, removed on exit, swept when stale.

While `convert`, `benchmark`, `survey` or the demo runs, `tempfile.tempdir` and `TMPDIR` point into
`<system temp>/edgeopt-run-<pid>.<start>-XXXX/`. Everything that goes through `tempfile` then lands
there: TensorFlow autograph's `__autograph_generated_file*.py`, SavedModels traced for export
(`edgeopt-export-*`), onnxruntime's quantizer folders (`edgeopt-ortq-*`), isolated TFLite
conversions (`edgeopt-tflite-*`, child processes inherit TMPDIR) and benchmark bundles
(`edgeopt-bench-*`). So what is ours is known by construction, not guessed from a name pattern.

- Every exit we control (return, exception, Ctrl-C, SIGTERM through the CLI) removes the folder.
- A SIGKILL or power loss leaves it; the next start of any of these commands removes every
  `edgeopt-run-*` folder whose process is gone (see edgeopt.owner), never a live run's.

Gotchas: the redirection is process-wide while a run lasts (another thread's `tempfile` calls land in
the private folder too); calls nest, and only the outermost creates and removes the folder.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from . import owner

PREFIX = "edgeopt-run-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+\.\d+)-")
_lock = threading.Lock()
_active: dict = {"dir": None, "depth": 0}


@contextlib.contextmanager
def private_tempdir():
    """Route this process's temp files into a private folder for the duration of the block."""
    with _lock:
        if _active["depth"] == 0:
            base = tempfile.gettempdir()
            sweep_stale(base)
            folder = tempfile.mkdtemp(prefix=f"{PREFIX}{owner.tag()}-", dir=base)
            _active.update(dir=folder, saved=(tempfile.tempdir, os.environ.get("TMPDIR")))
            tempfile.tempdir = folder
            os.environ["TMPDIR"] = folder
        _active["depth"] += 1
        folder = _active["dir"]
    try:
        yield Path(folder)
    finally:
        with _lock:
            _active["depth"] -= 1
            if _active["depth"] == 0:
                _restore(*_active.pop("saved"))
                shutil.rmtree(_active["dir"], ignore_errors=True)
                _active["dir"] = None


def in_private_tempdir(func):
    """Decorator: run `func` inside private_tempdir()."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with private_tempdir():
            return func(*args, **kwargs)

    return wrapper


def _restore(saved_tempdir, saved_env):
    tempfile.tempdir = saved_tempdir
    if saved_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved_env


def sweep_stale(base=None) -> list:
    """Remove private temp folders of processes that no longer run; return what was removed."""
    base = Path(base or tempfile.gettempdir())
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        who = owner.parse_tag(match.group(1)) if match else None
        if who and entry.is_dir() and not owner.alive(who):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
