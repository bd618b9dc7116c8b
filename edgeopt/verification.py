"""verify(): does an output folder tell the truth? Check it, and with repair=True fix what a kill can leave.

Checked in this order (and repaired in it, holding the folder lock, so no publisher runs meanwhile):

1. a half-done swap (`.edgeopt-journal.json`, see edgeopt.journal): named with its run and files;
   repair rolls it forward.
2. work in progress of runs whose process is gone (`.edgeopt-staging/<run>/`): repair removes it.
   A live run's is only noted.
3. temp files whose writer is gone (`.<name>.edgeopt-tmp-<pid>-*`) and those older edgeopt versions
   left (`.<name>.XXXXXXXX.tmp|.keras|.png|.npz`, `.edgeopt-write-probe.*`): repair removes them.
4. manifest.json parses; if not, repair keeps it aside as `manifest.unreadable-<time>.json`.
5. every record: an ok file exists under its final name with its sha256 and size; a failed file
   lives in `failed/`. Repair moves a file that differs from its record into `failed/` and marks the
   record failed with the reason (it is never served as good), moves a failed file out of the final
   names, and marks an ok record whose file is gone as failed. Repaired records lose their reuse key,
   so the next convert remakes them.
6. evaluation.npz has the hash the manifest records.
7. each published set (a bench report with its page and plots): every file is the one its index
   lists. Not repaired (rerun `edgeopt bench`).
8. with a manifest: model files (.tflite, .onnx, .keras) it does not list. Named, never deleted: they
   may be the user's.

Exit codes of `edgeopt verify OUT_DIR [--repair]`: 0 the folder matches its records (notes, such as
files marked failed, do not count); 1 a problem was found (with --repair: one could not be repaired);
2 the path is not a folder.

Example:
    >>> verdict = edgeopt.verify("edgeopt-out")  # doctest: +SKIP
    >>> verdict.ok, [p.message for p in verdict.problems]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import journal, staging
from .errors import OutputError
from .fileio import TEMP_NAME, sha256_file, sha256_tree, tree_size
from .manifest import FAILED_DIR, MANIFEST_NAME, Manifest
from .owner import alive, new_run_id
from .publish import SETS, commit, read_sets

MODEL_SUFFIXES = (".tflite", ".onnx", ".keras")
_LEGACY_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}(\.tmp|\.keras|\.png|\.npz)$|^\.edgeopt-write-probe\.[a-z0-9_]{8}$")


@dataclass
class Finding:
    kind: str  # half-done-swap, unfinished-run, temp-file, unreadable-manifest, changed, missing, misplaced,
    #            set-mismatch, unlisted, repair-failed
    path: str
    message: str
    repaired: str | None = None  # what the repair did


@dataclass
class Verdict:
    folder: Path
    problems: list = field(default_factory=list)  # Finding
    notes: list = field(default_factory=list)  # str: true, worth knowing, not wrong (failed files, live runs)
    checked: int = 0  # files compared with a record

    @property
    def ok(self) -> bool:
        """Nothing wrong is left: no problem found, or every one repaired."""
        return all(p.repaired for p in self.problems)

    def text(self) -> str:
        left = [p for p in self.problems if not p.repaired]
        state = "ok" if self.ok else f"{len(left)} problem{'s' if len(left) != 1 else ''}"
        lines = [f"{self.folder}: {state} ({self.checked} files checked against their records)"]
        lines += [f"  repaired: {p.message} -> {p.repaired}" for p in self.problems if p.repaired]
        lines += [f"  problem: {p.message}" for p in left]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def verify(folder, repair=False) -> Verdict:
    """Check `folder` against its manifest and report set; with repair=True, fix what can be fixed.

    Raises OutputError when `folder` does not exist or is a file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise OutputError(f"{str(folder)!r} does not exist: give the output folder of `edgeopt convert` or `bench`")
    if not folder.is_dir():
        raise OutputError(f"{str(folder)!r} is a file, not a folder: give the output folder of `edgeopt convert` "
                          "or `bench`")
    verdict = Verdict(folder)
    with journal.folder_lock(folder), _Repairer(folder, repair) as fixer:
        # Files an unrepaired swap is replacing belong to that swap's finding, not to findings of their own.
        in_swap = _check_journal(folder, verdict, fixer)
        _check_staging(folder, verdict, fixer)
        _check_temp_files(folder, verdict, fixer)
        manifest = _check_manifest(folder, verdict, fixer)
        if manifest is not None:
            _check_records(folder, manifest, verdict, fixer, in_swap)
            _check_evaluation(folder, manifest, verdict, in_swap)
        _check_sets(folder, verdict, in_swap)
        if manifest is not None:
            _check_unlisted(folder, manifest, verdict, in_swap)
    return verdict


class _Repairer:
    """Carries out repairs when asked to (else does nothing); records what each did or why it could not."""

    def __init__(self, folder, enabled):
        self.folder, self.enabled = folder, enabled
        self._staging = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._staging:
            self._staging.close()

    def fix(self, finding: Finding, action, done: str, verdict: Verdict):
        """Record `finding`; when repairing, run `action` (returns None or a list of what it could not do)."""
        verdict.problems.append(finding)
        if not self.enabled:
            return
        try:
            problems = action()
        except OSError as e:
            finding.message += f" (repair failed: {e.strerror or e})"
            return
        if problems:
            finding.message += f" (repair incomplete: {'; '.join(problems)})"
        else:
            finding.repaired = done

    def staging(self):
        if self._staging is None:
            self._staging = staging.Staging(self.folder, new_run_id())
        return self._staging


# ---- 1-3: what a kill leaves ------------------------------------------------------------------------
def _check_journal(folder, verdict, fixer) -> set:
    """Name a half-done swap (and roll it forward when repairing); return the paths it is still replacing."""
    pending = journal.pending(folder)
    if pending is None:
        return set()
    steps = pending["steps"]
    done = sum(_step_done(folder, s) for s in steps)
    what = pending.get("what") or ", ".join(s.get("to", s.get("path", "?")) for s in steps)
    message = (f"half-done swap by run {pending.get('run', '?')}: {what} ({done} of {len(steps)} steps done; "
               f"journal {journal.JOURNAL})")
    if "unreadable" in pending:
        message = f"unreadable journal {journal.JOURNAL} ({pending['unreadable']})"
    finding = Finding("half-done-swap", journal.JOURNAL, message)
    fixer.fix(finding, lambda: journal.roll_forward(folder), "rolled forward", verdict)
    return set() if finding.repaired else {s.get("to", s.get("path")) for s in steps}


def _step_done(folder, step) -> bool:
    if step["op"] == "delete":
        return not (folder / step["path"]).exists()
    dest = folder / step["to"]
    return not (folder / step["from"]).exists() and dest.exists() and sha256_tree(dest) == step["sha256"]


def _check_staging(folder, verdict, fixer):
    for run in staging.leftovers(folder):
        where = f"{staging.STAGING}/{run['run']}"
        if run["alive"]:
            verdict.notes.append(f"run {run['run']} is in progress ({where})")
            continue
        files = ", ".join(run["files"]) or "no files yet"
        fixer.fix(Finding("unfinished-run", where, f"run {run['run']} stopped before finishing: work in progress "
                          f"left in {where} ({files})"),
                  lambda p=run["path"]: staging.remove(folder, p), "removed", verdict)


def _check_temp_files(folder, verdict, fixer):
    for place in (folder, folder / FAILED_DIR):
        if not place.is_dir():
            continue
        for path in sorted(place.iterdir()):
            match = TEMP_NAME.match(path.name)
            if match and alive({"pid": int(match.group("pid"))}):
                continue  # a live writer's
            if _is_temp(path.name):
                rel = str(path.relative_to(folder))
                fixer.fix(Finding("temp-file", rel, f"temp file {rel} left by an interrupted write"),
                          lambda p=path: p.unlink(), "removed", verdict)


# ---- 4-6: the manifest and its files ----------------------------------------------------------------
def _check_manifest(folder, verdict, fixer) -> Manifest | None:
    if not (folder / MANIFEST_NAME).exists():
        return None
    try:
        return Manifest.load(folder)
    except Exception as e:  # any unreadable manifest: its records cannot be trusted or merged into
        aside = f"manifest.unreadable-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        fixer.fix(Finding("unreadable-manifest", MANIFEST_NAME, f"{MANIFEST_NAME} cannot be read ({e})"),
                  lambda: os.replace(folder / MANIFEST_NAME, folder / aside), f"kept aside as {aside}", verdict)
        return None


def _check_records(folder, manifest, verdict, fixer, in_swap):
    for art in manifest.artifacts:
        if not art.path or art.path in in_swap:
            continue
        path = folder / art.path
        if not path.exists():
            _record_problem(folder, manifest, art, "missing", f"{art.path} is listed ({art.status}) but missing",
                            "record marked failed: file missing", verdict, fixer)
            continue
        verdict.checked += 1
        if art.sha256 and (sha256_tree(path) != art.sha256 or tree_size(path) != art.size_bytes):
            _record_problem(folder, manifest, art, "changed", f"{art.path} differs from its record (sha256 or size)",
                            f"moved to {FAILED_DIR}/, record marked failed", verdict, fixer)
        elif art.status != "ok" and not art.path.startswith(f"{FAILED_DIR}/"):
            _record_problem(folder, manifest, art, "misplaced", f"{art.path} is marked {art.status} but sits among "
                            "the good files", f"moved to {FAILED_DIR}/", verdict, fixer)
        elif art.status == "failed":
            verdict.notes.append(f"{art.path}: failed ({(art.error or 'no reason recorded').splitlines()[0][:160]})")
        _note_stale_lineage(manifest, art, verdict)


def _note_stale_lineage(manifest, art, verdict):
    parent = manifest.get(art.parent) if art.parent else None
    if parent and art.parent_sha256 and parent.sha256 != art.parent_sha256:
        verdict.notes.append(f"{art.id} (run {art.run}) was made from an earlier {parent.id} than the one now here "
                             f"(run {parent.run}); convert with the recipe that made it to remake it")


def _record_problem(folder, manifest, art, kind, message, done, verdict, fixer):
    def repair():
        moves = []
        if kind == "missing":
            art.status, art.path, art.sha256, art.size_bytes, art.gzip_bytes = "failed", None, None, None, None
            art.error = f"its file was missing when verified ({time.strftime('%Y-%m-%d')}); rerun convert to remake it"
        else:
            if kind == "changed":
                art.status = "failed"
                art.error = "its file changed after it was recorded; rerun convert to remake it"
                art.sha256, art.size_bytes = sha256_tree(folder / art.path), tree_size(folder / art.path)
            new_path = f"{FAILED_DIR}/{art.id}"
            moves, art.path = [(folder / art.path, new_path)], new_path
        art.cache_key = None  # never reused as it stands: the next convert remakes it
        return commit(folder, fixer.staging(), moves, [], MANIFEST_NAME, manifest.to_dict(), fixer.staging().run_id,
                      f"repair of {art.id}")

    fixer.fix(Finding(kind, art.path, message), repair, done, verdict)


def _check_evaluation(folder, manifest, verdict, in_swap):
    ev = manifest.data.get("evaluation") or {}
    if not ev.get("path") or not ev.get("sha256") or ev["path"] in in_swap:
        return
    path = folder / ev["path"]
    verdict.checked += 1
    if not path.exists() or sha256_file(path) != ev["sha256"]:
        what = "is missing" if not path.exists() else "differs from the manifest's record"
        verdict.problems.append(Finding("changed", ev["path"], f"{ev['path']} {what}; rerun convert to remake it"))


# ---- 7-8: report sets and files nobody listed ---------------------------------------------------------
def _check_sets(folder, verdict, in_swap):
    if SETS in in_swap:
        return  # the index itself is being replaced: the swap's finding covers the set
    for name, entry in read_sets(folder)["sets"].items():
        for rel, meta in entry["files"].items():
            path = folder / rel
            verdict.checked += 1
            if not path.exists() or sha256_file(path) != meta["sha256"]:
                what = "is missing" if not path.exists() else "is not the file published with the others"
                verdict.problems.append(Finding("set-mismatch", rel, f"{rel} {what} in {name} of run {entry['run']} "
                                                f"(index {SETS}); rerun `edgeopt bench` to write the set again"))


def _is_temp(name) -> bool:
    return bool(TEMP_NAME.match(name) or _LEGACY_TEMP.match(name))


def _check_unlisted(folder, manifest, verdict, in_swap):
    listed = {a.path for a in manifest.artifacts if a.path} | in_swap
    source = manifest.source.get("path")
    for place in (folder, folder / FAILED_DIR):
        if not place.is_dir():
            continue
        for path in sorted(place.iterdir()):
            rel = str(path.relative_to(folder))
            if _is_temp(path.name):
                continue  # named (and removed) as a temp file
            if path.suffix in MODEL_SUFFIXES and rel not in listed and not _same_file(path, source):
                verdict.problems.append(Finding(
                    "unlisted", rel, f"{rel} is not listed in {MANIFEST_NAME}: it was not made by a run recorded here "
                    "(or by an older edgeopt, maybe half-written); move it away or remove it"))


def _same_file(path, other) -> bool:
    try:
        return bool(other) and Path(other).resolve() == path.resolve()
    except OSError:
        return False


def repair_on_start(folder, log=print) -> Verdict:
    """What `convert` and `bench` run first: repair the folder, say what was repaired and what is still wrong."""
    verdict = verify(folder, repair=True)
    for p in verdict.problems:
        log(f"repaired {folder}: {p.message} ({p.repaired})" if p.repaired else f"warning: {p.message}")
    return verdict
