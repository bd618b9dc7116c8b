"""Work in progress inside an output folder: `.edgeopt-staging/<run id>/`, never under a final name.

A run writes each file here first (`<name>.part`: no model suffix, so a glob for *.tflite or *.keras
never matches a half-written file), checks it, and only then does edgeopt.publish move it to its
final name together with its record. Each run's folder holds `owner.json` (pid, process start time,
host; see edgeopt.owner). Every exit we control removes the run's folder; after a kill, the next
`convert`/`bench` start or `edgeopt verify --repair` removes the folders of runs whose process is
gone (after rolling forward a journal that still needs their files), never a live run's.

Files are written with open(), so they get the mode the user's umask gives, and are fsynced: the
journal that later names them promises they are complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from . import owner
from .fileio import fsync_file

STAGING = ".edgeopt-staging"
PART = ".part"
OWNER = "owner.json"


class Staging:
    """One run's staging folder in `root`; a context manager that removes it on exit."""

    def __init__(self, root, run_id):
        self.root, self.run_id = Path(root), run_id
        self.dir = self.root / STAGING / run_id
        self.dir.mkdir(parents=True)
        (self.dir / OWNER).write_text(json.dumps(owner.current() | {"run": run_id}))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def path(self, name) -> Path:
        return self.dir / f"{name}{PART}"

    def write_bytes(self, name, data: bytes) -> Path:
        return self.write_with(name, lambda f: f.write(data))

    def write_with(self, name, writer) -> Path:
        """Stage `name` by calling writer(binary file object); return the staged path."""
        path = self.path(name)
        with open(path, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        return path

    def copy_in(self, name, source) -> Path:
        path = self.path(name)
        shutil.copyfile(source, path)
        fsync_file(path)
        return path

    def subfolder(self, name) -> Path:
        """A folder for writers that produce several files under their own names (a report set)."""
        folder = self.dir / name
        folder.mkdir()
        return folder

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            (self.root / STAGING).rmdir()  # only when no other run stages here
        except OSError:
            pass


def leftovers(root) -> list:
    """Every run folder in `root`'s staging area: {run, alive, files, path}."""
    base = Path(root) / STAGING
    if not base.is_dir():
        return []
    found = []
    for run_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and p.name != OWNER)
        found.append({"run": run_dir.name, "alive": owner.alive(_owner_of(run_dir)), "files": files, "path": run_dir})
    return found


def _owner_of(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / OWNER).read_text())
    except (OSError, ValueError):
        # Killed between creating the folder and writing owner.json: the run id carries the pid.
        parts = run_dir.name.split("-")
        return {"pid": int(parts[1])} if len(parts) > 2 and parts[1].isdigit() else {}


def remove(root, run_dir: Path):
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        (Path(root) / STAGING).rmdir()
    except OSError:
        pass
