"""Replace a set of files and the index that describes them (manifest.json) as one recoverable step.

A publish is an ordered list of steps: move a staged file to its final name, delete a file that the
new records supersede, and last, move the new index (manifest.json or a report set's index) into
place. Before the first step, `.edgeopt-journal.json` is written (atomically and durably) with every
step and the sha256 of every staged file; after the last, it is removed. So at any instant either
no journal exists, and every file under a final name is the one its index records, or a journal
exists, and it says exactly which swap was half done. Rolling forward is always possible: every
staged file was complete (and fsynced) before the journal named it, and each step is idempotent (a
move whose source is gone and whose destination holds the journaled hash is done).

Publishers and repairers hold an exclusive flock on the output folder itself, so two processes
publishing into one folder take turns, and a journal found while holding the lock belongs to a
process that died mid-swap. The lock dies with its process: a SIGKILL never leaves it held.

Example:
    >>> with folder_lock(out):  # doctest: +SKIP
    ...     apply(out, [move(out, staged, "m.int8.tflite"), delete("failed/m.int8.tflite"),
    ...                 move(out, staged_manifest, "manifest.json")], run="20250101T000000Z-4242-ab12")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from .fileio import fsync_dir, sha256_tree, write_json_atomic

try:
    import fcntl
except ImportError:  # Windows: no flock; swaps stay journaled, but concurrent runs into one folder are not serialised
    fcntl = None

JOURNAL = ".edgeopt-journal.json"
SCHEMA = "edgeopt.journal"


@contextlib.contextmanager
def folder_lock(folder):
    """Hold an exclusive lock on `folder` (flock on the directory; released when the process dies)."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def move(folder, source, final: str) -> dict:
    """A step that puts `source` (a file or folder inside `folder`, as a path from here) at `final` (relative)."""
    if not Path(source).exists():
        raise FileNotFoundError(f"nothing to publish at {source}")
    rel = os.path.relpath(source, folder)
    return {"op": "move", "from": rel, "to": final, "sha256": sha256_tree(source)}


def delete(final: str) -> dict:
    return {"op": "delete", "path": final}


def apply(folder, steps: list, run: str, what: str = "") -> list:
    """Journal `steps`, carry them out, clear the journal; return problems (none unless files were tampered with).

    The caller holds folder_lock(folder). `what` names the swap for `edgeopt verify` ("m.int8.tflite").
    """
    folder = Path(folder)
    write_json_atomic(folder / JOURNAL, {"schema": SCHEMA, "run": run, "what": what, "steps": steps})
    return roll_forward(folder)


def pending(folder) -> dict | None:
    """The journal of a half-done swap, or None. An unreadable journal is returned as {'unreadable': reason}."""
    path = Path(folder) / JOURNAL
    try:
        journal = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return {"unreadable": str(e), "steps": []}
    return journal if journal.get("schema") == SCHEMA else {"unreadable": "not an edgeopt journal", "steps": []}


def roll_forward(folder) -> list:
    """Finish the journaled swap in `folder` (caller holds the lock); return steps that could not be done."""
    folder = Path(folder)
    journal = pending(folder)
    if journal is None:
        return []
    problems = [f"unreadable journal {JOURNAL} ({journal['unreadable']})"] if "unreadable" in journal else []
    touched = {folder}
    for step in journal["steps"]:
        problem = _move(folder, step) if step["op"] == "move" else _delete(folder, step["path"])
        if problem:
            problems.append(problem)
        touched.add((folder / step.get("to", step.get("path"))).parent)
    for d in touched:
        fsync_dir(d)
    (folder / JOURNAL).unlink()
    fsync_dir(folder)
    return problems


def _move(folder: Path, step: dict) -> str | None:
    source, dest = folder / step["from"], folder / step["to"]
    if source.exists():
        if sha256_tree(source) != step["sha256"]:
            return f"{step['from']} changed after it was journaled; {step['to']} was left as it was"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_dir():  # os.replace cannot put anything over a folder
            shutil.rmtree(dest)
        os.replace(source, dest)
        return None
    if dest.exists() and sha256_tree(dest) == step["sha256"]:
        return None  # moved before the interruption
    return f"{step['from']} is gone and {step['to']} is not the journaled file"


def _delete(folder: Path, rel: str) -> None:
    path = folder / rel
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
