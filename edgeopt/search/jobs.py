"""The units of work a search hands out: convert one candidate, measure a batch of files on one target.

Both are plain functions of plain data, so a local process pool and a Ray task run the same code: the
candidate's recipe goes through `edgeopt.convert` (into the candidate's own folder, whose cache keys let
a rerun reuse every finished file) and the files through `edgeopt.benchmark`, as a user would call them.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import traceback
from pathlib import Path

from ..errors import EdgeoptError


def convert_candidate(job: dict) -> dict:
    """Convert one candidate into job['out']; return what the study keeps about its file.

    job: model (path), recipe (dict), export (the candidate's export), data ({role: Dataset or str}),
    out (folder), trust_model_code.
    """
    from ..pipeline import convert

    lines = []
    try:
        manifest = convert(job["model"], job["recipe"], out=job["out"], progress=False, log=lines.append,
                           trust_model_code=job.get("trust_model_code", False), **job["data"])
    except EdgeoptError as e:
        return {"status": "failed", "error": str(e), "log": lines[-20:]}
    except Exception as e:  # a converter bug must cost this candidate only
        return {"status": "failed", "error": f"unexpected {type(e).__name__}: {e}",
                "log": lines[-20:] + [traceback.format_exc(limit=5)]}
    return summarise(manifest, job["export"], lines)


def summarise(manifest, export: dict, lines=()) -> dict:
    """The record of the candidate's own export in `manifest` (its parents, e.g. the ONNX fp32, are not it)."""
    art = find_export(manifest, export)
    if art is None:
        return {"status": "failed", "error": "the converter made no file for this export", "log": list(lines)[-20:]}
    check = art.check or {}
    return {
        "status": art.status, "error": art.error,
        "artifact": {"id": art.id, "path": art.path, "sha256": art.sha256, "size_bytes": art.size_bytes,
                     "gzip_bytes": art.gzip_bytes, "cache_key": art.cache_key,
                     "check": {k: check.get(k) for k in ("accuracy", "top1_agreement", "max_abs_error", "passed")}},
        "evaluation": "evaluation.npz" if (Path(manifest.root) / "evaluation.npz").exists() else None,
    }


def find_export(manifest, export: dict):
    options = {k: v for k, v in export.items() if k not in ("format", "precision")}
    for art in manifest.artifacts:
        if art.format == export["format"] and art.precision == export["precision"] and \
                art.stage != "prune" and all(_same_option(art, k, v) for k, v in options.items()):
            return art
    return None


def _same_option(art, name, asked) -> bool:
    """The manifest records an option as resolved (`int8_variant: auto` becomes the variant chosen for the
    targets, with what was asked in its facts): a resolved option matches what the candidate asked."""
    if art.options.get(name) == asked:
        return True
    resolved = art.facts.get(name)
    return isinstance(resolved, dict) and resolved.get("asked") == asked


def convert_candidate_remote(model_name: str, model_blob: bytes, data: dict, job: dict) -> dict:
    """convert_candidate on a node that shares no disk with the driver: the model comes as bytes and the data
    as objects (both from Ray's object store: top-level arguments, so Ray resolves them), the candidate's folder
    goes back as a tar archive (extracted into job['out'] by the driver)."""
    import socket

    work = Path(tempfile.mkdtemp(prefix="edgeopt-search-"))
    try:
        model = work / model_name
        unpack_model(model_blob, model)
        result = convert_candidate({**job, "data": data, "model": str(model), "out": str(work / "out")})
        result["worker"] = {"host": socket.gethostname(), "pid": os.getpid()}
        result["folder_tar"] = pack_folder(work / "out") if (work / "out").exists() else None
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_files(files: dict, evaluation: bytes | None, target: str, settings: dict) -> dict:
    """Benchmark {name: bytes} on `target` in one interleaved run; return the report as a dict.

    Rows name their files by `name` (the same names the driver uses), so results map back to candidates.
    """
    from ..bench.harness import benchmark

    work = Path(tempfile.mkdtemp(prefix="edgeopt-measure-"))
    try:
        paths = []
        for name, blob in files.items():
            path = work / "files" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
            paths.append(path)
        eval_path = None
        if evaluation is not None:
            eval_path = work / "evaluation.npz"
            eval_path.write_bytes(evaluation)
        report = benchmark(paths, targets=[target], evaluation=eval_path, out=work / "report", progress=False,
                           log=lambda *_: None, **settings)
        d = report.to_dict()
        for row in d["rows"]:  # paths on this node mean nothing to the driver: keep the name it gave
            row["path"] = str(Path(row["path"]).relative_to(work / "files")) if row.get("path") else None
        d["worker"] = {"pid": os.getpid()}
        return d
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pack_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def unpack_folder(blob: bytes, dest: Path):
    """Extract into a sibling temp folder, then move it into place: a half-extracted folder is never `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(tmp, filter="data")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def pack_model(path: Path) -> bytes:
    """A model file's bytes, or a SavedModel folder as a tar archive."""
    return pack_folder(path) if path.is_dir() else path.read_bytes()


def unpack_model(blob: bytes, dest: Path):
    if tarfile.is_tarfile(io.BytesIO(blob)) and not dest.suffix:
        unpack_folder(blob, dest)
    else:
        dest.write_bytes(blob)
