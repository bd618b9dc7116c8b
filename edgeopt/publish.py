"""Put checked files under their final names together with their records, one recoverable step at a time.

An output folder only ever shows finished work:

    manifest.json, evaluation.npz      the records, and the data every file was checked on
    <model>.<...>.tflite / .onnx / .keras   files that passed their check
    failed/<id>                        files that failed their check, kept to inspect; the record says why
    report.json, report.md, *.png ...  one bench run's report set (index: .edgeopt-sets.json)
    .edgeopt-staging/<run>/            work in progress (see edgeopt.staging)
    .edgeopt-journal.json              only during a swap, or after a kill in one (see edgeopt.journal)

A run stages a file, checks it, then `OutputFolder.publish` moves it to its final name (or into
`failed/`) and rewrites manifest.json in one journaled swap. Each publish re-reads manifest.json
under the folder lock and changes only the records it publishes: one record per file, the newest
wins, each naming the `run` that made it; every other record stays, whichever run made it, failed
marks included. A record that moves (ok -> failed or back) deletes its old file in the same swap.

`staged_set` does the same for a set of files that must never mix two runs (a bench report, its page
and plots): written into a staging folder, then swapped in together, with their hashes in
`.edgeopt-sets.json` for `edgeopt verify`.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from . import journal
from .errors import OutputError
from .fileio import TEMP_NAME, fsync_file, gzip_size, sha256_file, sha256_tree, tree_size
from .manifest import FAILED_DIR, MANIFEST_NAME, Manifest
from .owner import new_run_id
from .staging import Staging

SETS = ".edgeopt-sets.json"
SETS_SCHEMA = "edgeopt.sets"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def final_name(artifact) -> str:
    return artifact.id if artifact.ok else f"{FAILED_DIR}/{artifact.id}"


def commit(root, staging, moves, deletes, index_name, index: dict, run_id, what) -> list:
    """Journal and carry out: moves [(source, final)], deletes [final], then `index` written as `index_name`.

    The caller holds journal.folder_lock(root). Returns problems (none unless files were tampered with).
    """
    root = Path(root)
    staged_index = staging.write_bytes(index_name, (json.dumps(index, indent=2, default=str) + "\n").encode())
    steps = [journal.move(root, source, final) for source, final in moves]
    steps += [journal.delete(rel) for rel in deletes]
    steps.append(journal.move(root, staged_index, index_name))
    return journal.apply(root, steps, run_id, what)


def commit_or_raise(*args):
    """commit() for a run's own files: a step that cannot be done means someone changed the folder meanwhile."""
    problems = commit(*args)
    if problems:
        raise OutputError(f"publishing into {args[0]} failed: {'; '.join(problems)}; the folder was changed by "
                          "something else during the run; run `edgeopt verify` on it")


def load_manifest(root) -> Manifest | None:
    if not (Path(root) / MANIFEST_NAME).exists():
        return None
    try:
        return Manifest.load(root)
    except Exception as e:  # an unreadable manifest must not be overwritten: its records would be lost
        raise OutputError(f"{Path(root) / MANIFEST_NAME} cannot be read ({e}); run `edgeopt verify "
                          f"{root} --repair` to keep it aside and start a new one") from None


class OutputFolder:
    """A converter run's output folder: stage files, then publish each with its record.

    A context manager: entering makes the run's staging folder; leaving removes it, and marks the run
    finished in the manifest when the block ended without an exception.
    """

    def __init__(self, root, command="convert"):
        self.root, self.command = Path(root), command
        self.run_id, self.started = new_run_id(), now()
        self.staging = None
        self.manifest = None  # as last published: what is on disk

    def __enter__(self):
        self.staging = Staging(self.root, self.run_id)
        return self

    def __exit__(self, exc_type, *_):
        try:
            if exc_type is None and self.manifest is not None:
                self.publish(self.manifest, finished=True)
        finally:
            self.staging.close()

    def stage_bytes(self, name, data: bytes) -> Path:
        return self.staging.write_bytes(name, data)

    def stage_with(self, name, writer) -> Path:
        return self.staging.write_with(name, writer)

    def stage_copy(self, name, source) -> Path:
        return self.staging.copy_in(name, source)

    def publish(self, manifest: Manifest, records=(), files=None, finished=False) -> Manifest:
        """Swap in `records` [(Artifact, staged file or None)] and `files` {final name: staged file}.

        `manifest` gives this run's top-level fields (source, recipe, data, versions). Returns the merged
        manifest as it now is on disk. A staged record's path becomes its final name (`failed/` unless ok)
        and its sha256, size and gzip size are read from the staged file.
        """
        with journal.folder_lock(self.root):
            merged = self._merge_top(load_manifest(self.root) or Manifest(), manifest, finished)
            moves, deletes = [], []
            for art, staged in records:
                previous = merged.get(art.id)
                if staged is not None:
                    parent = merged.get(art.parent) if art.parent else None
                    art.parent_sha256 = parent.sha256 if parent else None
                    art.path = final_name(art)
                    art.sha256, art.size_bytes = sha256_tree(staged), tree_size(staged)
                    art.gzip_bytes = gzip_size(staged)
                    moves.append((staged, art.path))
                if previous and previous.path and previous.path != art.path:
                    deletes.append(previous.path)  # superseded: never an unlisted model beside the new record
                art.run = art.run or self.run_id
                merged.put(art)
                made = self._entry(merged)["artifacts"]
                made += [] if art.id in made else [art.id]
            moves += [(staged, name) for name, staged in (files or {}).items()]
            _forget_idle_runs(merged, self.run_id)
            what = ", ".join([a.id for a, _ in records] + list(files or {})) or "run record"
            commit_or_raise(self.root, self.staging, moves, deletes, MANIFEST_NAME, merged.to_dict(), self.run_id, what)
        merged.root = self.root
        self.manifest = merged
        return merged

    def _merge_top(self, merged: Manifest, manifest: Manifest, finished) -> Manifest:
        merged.source, merged.recipe, merged.tool_versions = manifest.source, manifest.recipe, manifest.tool_versions
        merged.data = {**merged.data, **manifest.data}  # per role: evaluation.npz stays described until replaced
        entry = self._entry(merged)
        entry["source"] = {k: manifest.source.get(k) for k in ("path", "sha256", "name")}
        if finished:
            entry["finished"] = now()
        return merged

    def _entry(self, merged: Manifest) -> dict:
        entry = next((r for r in merged.runs if r["id"] == self.run_id), None)
        if entry is None:
            entry = {"id": self.run_id, "command": self.command, "started": self.started, "finished": None,
                     "source": {}, "artifacts": []}
            merged.runs.append(entry)
        return entry


def _forget_idle_runs(manifest: Manifest, current):
    """Keep the runs some record still names, and the current one: the list stays as long as the folder."""
    named = {a.run for a in manifest.artifacts} | {current}
    manifest.runs = [r for r in manifest.runs if r["id"] in named]


# ---- sets of files published together (a bench report) -------------------------------------------
def read_sets(root) -> dict:
    try:
        index = json.loads((Path(root) / SETS).read_text())
    except (OSError, ValueError):
        return {"schema": SETS_SCHEMA, "sets": {}}
    return index if index.get("schema") == SETS_SCHEMA else {"schema": SETS_SCHEMA, "sets": {}}


@contextlib.contextmanager
def staged_set(root, name):
    """Yield a folder to write one set of files into; on success swap them all into `root` together.

    Files of the previous set of that name which the new one lacks are deleted in the same swap, so
    the folder never shows a mix of two runs. On an exception nothing is published.

    Example:
        >>> with staged_set(out, "bench-report") as folder:  # doctest: +SKIP
        ...     (folder / "report.md").write_text(text)
    """
    root = Path(root)
    run_id = new_run_id()
    with Staging(root, run_id) as staging:
        folder = staging.subfolder(name)
        yield folder
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not TEMP_NAME.match(p.name))
        for p in files:
            fsync_file(p)  # the journal will promise they are complete, whoever wrote them
        listed = {str(p.relative_to(folder)): {"sha256": sha256_file(p), "size": p.stat().st_size} for p in files}
        with journal.folder_lock(root):
            index = read_sets(root)
            old = index["sets"].get(name, {}).get("files", {})
            index["sets"][name] = {"run": run_id, "published": now(), "files": listed}
            moves = [(p, str(p.relative_to(folder))) for p in files]
            commit_or_raise(root, staging, moves, [n for n in old if n not in listed], SETS, index, run_id,
                            f"{name}: {', '.join(listed)}")
