"""A kill at any instant leaves a folder whose manifest tells the truth, and a rerun finishes the job (issue 15).

Real processes, real SIGKILL of the whole process group, nothing in edgeopt that knows about the test:
each run is watched from the outside (the lines it prints, the files that appear in its folders; see
crashwatch) and killed at the first sign of a stage boundary. The same command is then run again,
which reuses the finished work and is killed at the next boundary, until a run finishes. After every
kill:
- `edgeopt.verify` passes, or names exactly the half-done step: the journaled swap that is on disk
  (its run and files), a dead run's staged work, or a temp file of an interrupted write; nothing else;
- checked independently of verify: every model file under a final name (or in failed/) is listed with
  its sha256 and size, ok files outside failed/ and failed ones inside; every file of the bench report
  set is the one its index lists; every file has the umask's mode; no record was lost, and no failed
  mark was lost unless a newer run remade that record.
At the end of each chain the folder verifies clean and the system temp folder holds nothing of ours.
The convert chains run into an empty folder, then a second recipe replaces every file but one in the
complete folder; the bench chains publish a first report, then replace it.
"""

import json
import os
import sys

import numpy as np
import pytest

import edgeopt
from edgeopt import journal
from edgeopt.fileio import sha256_file, sha256_tree

from . import crashwatch as cw

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches folders with inotify")]

RECIPE_A = """\
prune: {target_sparsity: 0.5, epochs: 1}
check: {tolerances: {int8: {min_cosine: 1.01}}}   # an impossible bound: int8 always fails, so it lives in failed/
exports:
  - {format: tflite, precision: fp32}
  - {format: tflite, precision: int8}
  - {format: onnx, precision: fp32}
  - {format: onnx, precision: int8-dynamic}
"""
# A second recipe into the complete folder: a new prune key replaces every file, except the one it drops.
RECIPE_B = RECIPE_A.replace("epochs: 1", "epochs: 2").replace("  - {format: onnx, precision: int8-dynamic}\n", "")
MODEL_SUFFIXES = (".tflite", ".onnx", ".keras")
ALLOWED_AFTER_A_KILL = {"half-done-swap", "unfinished-run", "temp-file"}
PROCESS_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def ws(tmp_path_factory, digits):
    from edgeopt.converter.keras_io import tf_keras

    keras = tf_keras()
    d = tmp_path_factory.mktemp("crash")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = digits["train"]
    model.fit(train.x[0], train.y, epochs=2, verbose=0)
    model.save(d / "m.h5")
    np.savez(d / "train.npz", x=train.x[0][:300], y=train.y[:300])
    np.savez(d / "calib.npz", x=train.x[0][:64])
    np.savez(d / "eval.npz", x=digits["evaluation"].x[0][:100], y=digits["evaluation"].y[:100])
    (d / "a.yaml").write_text(RECIPE_A)
    (d / "b.yaml").write_text(RECIPE_B)
    (d / "systmp").mkdir()
    (d / "out").mkdir()
    return d


def _env(ws):
    return dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(ws / "systmp"), TF_CPP_MIN_LOG_LEVEL="2")


def _convert(ws, recipe):
    return [sys.executable, "-m", "edgeopt.cli", "convert", ws / "m.h5", "--recipe", ws / recipe, "--train",
            ws / "train.npz", "--calibration", ws / "calib.npz", "--evaluation", ws / "eval.npz", "--out", ws / "out",
            "--quiet"]


def _bench(ws):
    return [sys.executable, "-m", "edgeopt.cli", "bench", ws / "out", "--threads", "1", "--rounds", "1",
            "--min-runs", "5", "--min-seconds", "0.01", "--warmup-runs", "1", "--quiet"]


def test_convert_killed_at_every_stage_boundary_leaves_a_truthful_folder_and_reruns_finish(ws):
    out = ws / "out"
    first = [cw.line("loaded "), cw.line("pruning to"), cw.journal_moving("m.pruned50.keras"),
             cw.file_event("moved", "manifest.json", out), cw.journal_moving("evaluation.npz"),
             cw.written_in_staging("fp32.tflite.part", out), cw.line("tflite int8:"),
             cw.journal_moving("failed/m.pruned50.int8.tflite"), cw.line("onnx fp32:"),
             cw.line("artifacts ok; manifest:")]
    kills_a = _chain(ws, _convert(ws, "a.yaml"), [out], first, expected_rc=1)
    made_by_a = _records(out)
    second = [cw.line("pruning to"), cw.journal_moving("m.pruned50.keras"),
              cw.file_event("moved", "m.pruned50.keras", out),
              cw.journal_moving("evaluation.npz"), cw.journal_moving("m.pruned50.fp32.tflite"),
              cw.line("onnx fp32:"), cw.journal_moving("m.pruned50.fp32.onnx"), cw.line("artifacts ok; manifest:")]
    kills_b = _chain(ws, _convert(ws, "b.yaml"), [out], second, expected_rc=1)
    _report("convert", kills_a, kills_b)
    assert len(kills_a) + len(kills_b) >= 10
    # The second recipe replaced every file it makes and kept the record (and file) of the one it dropped.
    after = _records(out)
    assert set(made_by_a) <= set(after)
    kept = after["m.pruned50.int8-dynamic.onnx"]
    assert kept["run"] == made_by_a["m.pruned50.int8-dynamic.onnx"]["run"] and (out / kept["path"]).exists()
    assert all(after[i]["run"] != made_by_a[i]["run"] for i in after if i != "m.pruned50.int8-dynamic.onnx")
    assert after["m.pruned50.int8.tflite"]["status"] == "failed"


def test_bench_killed_at_every_stage_boundary_never_mixes_two_reports(ws):
    out = ws / "out"
    if not (out / "manifest.json").exists():  # this test alone: a converted folder, made without kills
        assert cw.Run(_convert(ws, "a.yaml"), _env(ws), [out], []).wait(PROCESS_TIMEOUT_S) == 1
    first = [cw.created("edgeopt-run-"), cw.created("edgeopt-bench-"), cw.line("local: ok"),
             cw.written_in_staging("size.png", out), cw.written_in_staging("report.json", out), cw.any_journal(),
             cw.file_event("moved", "report.md", out), cw.file_event("moved", ".edgeopt-sets.json", out)]
    kills_c = _chain(ws, _bench(ws), [out, ws / "systmp"], first, expected_rc=0)
    published = json.loads((out / ".edgeopt-sets.json").read_text())["sets"]["bench-report"]
    second = [cw.line("local: ok"), cw.written_in_staging("report.md", out), cw.any_journal(),
              cw.file_event("moved", "latency_vs_accuracy.png", out), cw.file_event("moved", "report.json", out),
              cw.file_event("moved", ".edgeopt-sets.json", out)]
    kills_d = _chain(ws, _bench(ws), [out, ws / "systmp"], second, expected_rc=0)
    _report("bench", kills_c, kills_d)
    assert len(kills_c) + len(kills_d) >= 10
    replaced = json.loads((out / ".edgeopt-sets.json").read_text())["sets"]["bench-report"]
    assert replaced["run"] != published["run"] and set(replaced["files"]) == set(published["files"])


# ---- the chain: run, kill at a boundary, check, run again -----------------------------------------------
def _chain(ws, argv, folders, triggers, expected_rc):
    """Rerun `argv` until a run finishes; each run is killed at the first remaining trigger it reaches."""
    out, remaining, kills = ws / "out", list(triggers), []
    before = _records(out)
    while True:
        run = cw.Run(argv, _env(ws), folders, remaining)
        rc = run.wait(PROCESS_TIMEOUT_S)
        if run.fired is None:
            break
        remaining.remove(run.fired)
        kills.append((run.fired.name, _check_after_kill(out, before)))
        before = _records(out)
    assert rc == expected_rc, run.output()[-3000:]
    verdict = edgeopt.verify(out)
    assert verdict.ok and not verdict.problems, verdict.text()
    assert journal.pending(out) is None and not (out / ".edgeopt-staging").exists()
    _check_files_against_records(out)
    assert sorted(p.name for p in (ws / "systmp").iterdir()) == []  # swept: the killed runs' temp folders too
    return kills


def _check_after_kill(out, before) -> str:
    """What must hold in the folder a SIGKILL left; returns the state seen, for the report."""
    pending = journal.pending(out)
    verdict = edgeopt.verify(out)
    kinds = {p.kind for p in verdict.problems}
    assert kinds <= ALLOWED_AFTER_A_KILL, verdict.text()
    if pending:
        (swap,) = [p for p in verdict.problems if p.kind == "half-done-swap"]
        assert pending["run"] in swap.message and pending["what"] in swap.message, swap.message
    else:
        assert "half-done-swap" not in kinds
        _check_files_against_records(out)
    for p in verdict.problems:
        if p.kind == "unfinished-run":
            assert p.path.startswith(".edgeopt-staging/") and p.path.split("/")[1] in p.message
    _check_modes(out)
    _check_no_record_lost(before, _records(out))
    return "half-done swap" if pending else "staged work left" if "unfinished-run" in kinds else "clean"


def _records(out) -> dict:
    path = out / "manifest.json"
    return {a["id"]: a for a in json.loads(path.read_text())["artifacts"]} if path.exists() else {}


def _check_no_record_lost(before, after):
    for art_id, old in before.items():
        assert art_id in after, f"the record of {art_id} was lost"
        if old["status"] == "failed" and after[art_id]["status"] != "failed":
            assert after[art_id]["run"] != old["run"], f"{art_id} lost its failed mark"


def _check_files_against_records(out):
    """Independently of verify: what sits under a final name is exactly what the records say."""
    records = {a["path"]: a for a in _records(out).values() if a["path"]}
    for path in out.rglob("*"):
        rel = path.relative_to(out)
        if rel.parts[0] == ".edgeopt-staging" or not path.is_file():
            continue
        assert not rel.name.endswith(MODEL_SUFFIXES) or str(rel) in records, f"{rel} is not in the manifest"
    for rel, art in records.items():
        assert sha256_tree(out / rel) == art["sha256"] and (out / rel).stat().st_size == art["size_bytes"], rel
        assert (art["status"] == "ok") == (not rel.startswith("failed/")), (rel, art["status"])
    sets = out / ".edgeopt-sets.json"
    listed = json.loads(sets.read_text())["sets"].get("bench-report", {}).get("files", {}) if sets.exists() else {}
    for name, meta in listed.items():
        assert sha256_file(out / name) == meta["sha256"], f"{name} is not from the same bench run as the others"
    strays = {p.name for p in out.glob("report.*")} | {p.name for p in out.glob("*.png")}
    assert strays <= set(listed), f"report files outside the published set: {strays - set(listed)}"


def _check_modes(out):
    mask = os.umask(0o022)
    os.umask(mask)
    private = [str(p.relative_to(out)) for p in out.rglob("*")
               if p.is_file() and p.stat().st_mode & 0o777 != 0o666 & ~mask]
    assert not private, f"files without the umask's mode: {private}"


def _report(what, *chains):
    # Shown with -s (and in the failure output): how many kill points fired and what each left.
    lines = [f"{what}: {sum(len(c) for c in chains)} kill points"]
    for n, chain in enumerate(chains, 1):
        lines += [f"  chain {n}: killed at {name} -> {state}" for name, state in chain]
    print("\n".join(lines))
