"""survey(): run the converter over every model in a folder; one row per model, as Markdown and JSON.

Each model is converted in its own process (`edgeopt convert`), so no model can crash the survey:
a refusal, a Python error, a crash inside TensorFlow or a time-out becomes that model's row. Without
data shipped with the models, every check and every int8 calibration uses synthetic inputs, and the
tables say so.

Example:
    >>> report = edgeopt.survey("models/", out="survey-out")  # doctest: +SKIP
    >>> [(r["model"], r["status"]) for r in report["rows"]]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .errors import EdgeoptError
from .fileio import check_writable_dir, write_json_atomic, write_text_atomic
from .manifest import MANIFEST_NAME, Manifest
from .publish import staged_set
from .scratch import in_private_tempdir
from .survey_table import survey_markdown

SURVEY_JSON, SURVEY_MD = "survey.json", "survey.md"
SCHEMA = "edgeopt.survey"


@in_private_tempdir
def survey(folder, out="survey-out", *, artifacts=None, samples=32, trust_model_code=False, timeout_s=900,
           log=print) -> dict:
    """Convert every model in `folder` (every export, synthetic data); write survey.md and survey.json to `out`.

    Args:
        folder: a folder of .h5 / .keras files and SavedModel folders (found by content, not extension).
        out: where survey.md and survey.json go (rewritten together after every model).
        artifacts: where each model's converted files go (default: `out`/models/<model>).
        samples: synthetic calibration and evaluation samples per model.
        trust_model_code: load Lambda layers and custom classes (runs code stored in the files).
        timeout_s: the most one model may take; past it the model's row says so.

    Gotchas: results on synthetic inputs prove a conversion is faithful, not that the model is accurate.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeoptError(f"survey folder {str(folder)!r} does not exist or is not a folder")
    models = find_models(folder)
    if not models:
        raise EdgeoptError(f"no Keras model in {str(folder)!r} (looked for HDF5, .keras zip and SavedModel content)")
    out = check_writable_dir(out)
    artifacts = Path(artifacts) if artifacts else Path(out) / "models"
    report = {"schema": SCHEMA, "folder": str(folder), "synthetic_data": True, "samples": samples,
              "trust_model_code": trust_model_code, "rows": []}
    with tempfile.TemporaryDirectory(prefix="edgeopt-survey-") as tmp:
        recipe = Path(tmp) / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({"data": {"calibration_samples": samples, "evaluation_samples": samples}}))
        for i, path in enumerate(models, 1):
            log(f"[{i}/{len(models)}] {path.name} ...")
            row = survey_one(path, artifacts / path.stem, recipe, trust_model_code, timeout_s)
            log(f"  {row['status']} in {row['seconds']:.0f}s" + (f": {row['error']}" if row.get("error") else ""))
            report["rows"].append(row)
            _write(report, Path(out))
    return report


def find_models(folder: Path) -> list[Path]:
    from .converter.keras_io import sniff

    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        try:
            sniff(path)
        except EdgeoptError:
            continue  # not a model (a README, a manifest, a damaged file would be listed by convert)
        found.append(path)
    return found


def survey_one(path, out, recipe, trust, timeout_s) -> dict:
    """One model's row: converted in a child `edgeopt convert`, described from its manifest."""
    row = {"model": path.stem, "file": path.name, **describe_file(path)}
    cmd = [sys.executable, "-m", "edgeopt.cli", "convert", str(path), "--recipe", str(recipe), "--out", str(out),
           "--calibration", "synthetic", "--evaluation", "synthetic", "--quiet", "--no-reuse"]
    if trust:
        cmd.append("--trust-model-code")
    manifest = Path(out) / MANIFEST_NAME
    manifest.unlink(missing_ok=True)  # a manifest from an earlier survey must not describe this run
    t0 = time.time()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        code, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired:
        code, stderr = None, ""
    row["seconds"] = round(time.time() - t0, 1)
    if manifest.exists() and code is not None:
        row.update(_from_manifest(Manifest.load(manifest)))
    if code is None:
        row.update(status="timeout", error=f"did not finish in {timeout_s}s")
    elif code == 2:
        row.update(status="refused" if "stores code" in stderr else "not loaded", error=_edgeopt_error(stderr))
    elif code < 0 or code not in (0, 1):
        row.update(status="crashed", error=f"the converter process ended with code {code}: {_last_line(stderr)}")
    return row


def describe_file(path) -> dict:
    """What can be read without loading: container, saved Keras version, code stored in the file."""
    from .converter import model_code
    from .converter.keras_io import sniff

    kind, version = sniff(path)
    try:
        config = model_code.read_config(path, kind)
        stored = [f"{c.layer} ({c.class_name})" for c in model_code.scan(config, lambda cls: True)]
    except Exception:  # a config that does not parse is reported by the conversion itself
        stored = []
    return {"container": kind, "saved_keras_version": version, "stored_code": stored}


def _from_manifest(m: Manifest) -> dict:
    arts = [{
        "id": a.id, "format": a.format, "precision": a.precision, "status": a.status, "error": a.error,
        "max_abs_error": (a.check or {}).get("max_abs_error"), "cosine": (a.check or {}).get("cosine"),
        "top1_agreement": (a.check or {}).get("top1_agreement"), "size_bytes": a.size_bytes,
        "synthetic_calibration": bool(a.facts.get("synthetic_calibration")), "fixed_batch": a.facts.get("fixed_batch"),
    } for a in m.artifacts]
    failed = [a for a in arts if a["status"] != "ok"]
    return {
        "status": "converted" if not failed else ("partial" if len(failed) < len(arts) else "failed"),
        "loader": m.source.get("loader"), "model_class": m.source.get("model_class"), "params": m.source.get("params"),
        "layers_of_note": m.source.get("layers_of_note", {}), "export_batch": m.source.get("export_batch"),
        "inputs": m.source.get("inputs"), "warnings": m.source.get("warnings", []), "artifacts": arts,
    }


def _edgeopt_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("edgeopt: error:")]
    return lines[-1].removeprefix("edgeopt: error:").strip() if lines else _last_line(stderr)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no output"


def _write(report, out: Path):
    with staged_set(out, "survey") as staged:  # survey.json and survey.md always describe the same rows
        write_json_atomic(staged / SURVEY_JSON, report)
        write_text_atomic(staged / SURVEY_MD, survey_markdown(report))


def load(out) -> dict:
    return json.loads((Path(out) / SURVEY_JSON).read_text())
