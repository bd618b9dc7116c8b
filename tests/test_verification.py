"""`edgeopt verify` names each kind of damage a kill (or a person) can leave, and --repair fixes what it can.

TensorFlow-free: folders are made by the real publisher (edgeopt.publish) from small files; leftovers of
dead processes come from real processes that exited.
"""

import json
import os
import re
import subprocess
import sys

import pytest

import edgeopt
from edgeopt import journal
from edgeopt.errors import OutputError
from edgeopt.fileio import sha256_file, write_json_atomic
from edgeopt.manifest import Artifact, Manifest
from edgeopt.publish import OutputFolder, staged_set
from edgeopt.staging import Staging


def _artifact(i, status="ok"):
    return Artifact(id=f"m.{i}.tflite", path=f"m.{i}.tflite", format="tflite", precision="fp32",
                    stage="tflite-convert", parent=None, status=status, cache_key=f"key{i}",
                    error=None if status == "ok" else "check failed")


def _publish(out, specs):
    """One run publishing (number, status, content) records; returns the manifest as on disk."""
    with OutputFolder(out) as folder:
        manifest = Manifest(source={"path": "m.h5"})
        for i, status, content in specs:
            staged = folder.stage_bytes(f"m.{i}.tflite", content)
            manifest = folder.publish(manifest, [(_artifact(i, status), staged)])
    return folder.manifest


@pytest.fixture
def folder(tmp_path):
    """A folder one run published into: two ok files and one that failed its check."""
    out = tmp_path / "out"
    out.mkdir()
    _publish(out, [(1, "ok", b"model one"), (2, "ok", b"model two"), (3, "failed", b"model three")])
    return out


def _dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _stage_in_a_process_that_dies(out):
    """A run that staged a file and was gone before it could publish it."""
    code = ("import sys; from edgeopt.staging import Staging; "
            "Staging(sys.argv[1], 'dead-run').write_bytes('m.9.tflite', b'half')")
    subprocess.run([sys.executable, "-c", code, str(out)], check=True)
    return "dead-run"


def _journal_a_swap(out, steps_done):
    """The state a publisher leaves when killed after writing its journal and `steps_done` of its steps."""
    staging = Staging(out, "20250101T000000Z-1-abcd")
    staged = staging.write_bytes("m.1.tflite", b"model one, version two")
    manifest = Manifest.load(out)
    art = manifest.get("m.1.tflite")
    art.sha256, art.size_bytes = sha256_file(staged), staged.stat().st_size
    staged_manifest = staging.write_bytes("manifest.json", json.dumps(manifest.to_dict()).encode())
    steps = [journal.move(out, staged, "m.1.tflite"), journal.move(out, staged_manifest, "manifest.json")]
    write_json_atomic(out / journal.JOURNAL, {"schema": journal.SCHEMA, "run": staging.run_id,
                                              "what": "m.1.tflite", "steps": steps})
    for step in steps[:steps_done]:
        os.replace(out / step["from"], out / step["to"])
    # The staging folder stays, as a killed publisher leaves it (here it is this live process's: only a note).


def _break(out, how):
    if how == "swap-not-started":
        _journal_a_swap(out, 0)
    elif how == "swap-half-done":
        _journal_a_swap(out, 1)
    elif how == "dead-run":
        _stage_in_a_process_that_dies(out)
    elif how == "temp-files":
        (out / f".manifest.json.edgeopt-tmp-{_dead_pid()}-0a1b2c3d").write_text("{")
        (out / ".m.pruned50.keras.k2j3h4g5.keras").write_bytes(b"")  # what edgeopt 0.1 left behind
    elif how == "changed":
        (out / "m.1.tflite").write_bytes(b"someone else's model")
    elif how == "missing":
        (out / "m.2.tflite").unlink()
    elif how == "misplaced":  # a folder written before failed/ existed
        manifest = Manifest.load(out)
        manifest.get("m.3.tflite").path = "m.3.tflite"
        os.replace(out / "failed" / "m.3.tflite", out / "m.3.tflite")
        manifest.save()
    elif how == "unreadable":
        (out / "manifest.json").write_text('{"schema": "edgeopt.manifest", ')


@pytest.mark.parametrize("how,kind,message,repaired", [
    ("swap-not-started", "half-done-swap", r"half-done swap by run 20250101T000000Z-1-abcd: m.1.tflite \(0 of 2 steps",
     "rolled forward"),
    ("swap-half-done", "half-done-swap", r"half-done swap by run .*: m.1.tflite \(1 of 2 steps done", "rolled forward"),
    ("dead-run", "unfinished-run", r"run dead-run stopped before finishing: .*\(m.9.tflite.part\)", "removed"),
    ("temp-files", "temp-file", r"temp file \.(manifest\.json|m\.pruned50\.keras)\..* left by an interrupted write",
     "removed"),
    ("changed", "changed", r"m.1.tflite differs from its record", "moved to failed/, record marked failed"),
    ("missing", "missing", r"m.2.tflite is listed \(ok\) but missing", "record marked failed: file missing"),
    ("misplaced", "misplaced", r"m.3.tflite is marked failed but sits among the good files", "moved to failed/"),
    ("unreadable", "unreadable-manifest", r"manifest.json cannot be read", "kept aside as manifest.unreadable-"),
])
def test_each_kind_of_damage_is_named_then_repaired(folder, how, kind, message, repaired):
    _break(folder, how)
    before = sorted(p.name for p in folder.rglob("*"))
    verdict = edgeopt.verify(folder)
    assert not verdict.ok and {p.kind for p in verdict.problems} == {kind}, verdict.text()
    assert any(re.search(message, p.message) for p in verdict.problems), verdict.text()
    assert sorted(p.name for p in folder.rglob("*")) == before  # verify alone changes nothing
    fixed = edgeopt.verify(folder, repair=True)
    assert fixed.ok and all(p.repaired.startswith(repaired) for p in fixed.problems), fixed.text()
    again = edgeopt.verify(folder)
    assert again.ok and not again.problems, again.text()


def test_a_rolled_forward_swap_serves_the_new_file_with_its_new_record(folder):
    _journal_a_swap(folder, 1)
    edgeopt.verify(folder, repair=True)
    record = Manifest.load(folder).get("m.1.tflite")
    assert (folder / "m.1.tflite").read_bytes() == b"model one, version two"
    assert record.sha256 == sha256_file(folder / "m.1.tflite")


def test_a_changed_file_is_never_served_as_good_and_is_remade_by_the_next_run(folder):
    _break(folder, "changed")
    edgeopt.verify(folder, repair=True)
    record = Manifest.load(folder).get("m.1.tflite")
    assert record.status == "failed" and "changed after it was recorded" in record.error
    assert record.path == "failed/m.1.tflite" and record.cache_key is None  # no reuse key: convert remakes it
    assert not (folder / "m.1.tflite").exists()


def test_unlisted_model_files_and_mixed_report_sets_are_named_but_never_deleted(folder):
    (folder / "stray.onnx").write_bytes(b"someone's model")
    with staged_set(folder, "bench-report") as staged:
        (staged / "report.json").write_text("{}")
        (staged / "report.md").write_text("# one run")
    (folder / "report.md").write_text("# another run")
    verdict = edgeopt.verify(folder, repair=True)
    assert {(p.kind, p.path) for p in verdict.problems} == {("unlisted", "stray.onnx"), ("set-mismatch", "report.md")}
    assert not verdict.ok and (folder / "stray.onnx").exists() and (folder / "report.md").exists()
    assert "rerun `edgeopt bench`" in verdict.text()


def test_live_runs_leftovers_are_notes_and_survive_a_repair(folder):
    with Staging(folder, "live-run") as live:
        live.write_bytes("m.8.tflite", b"in progress")
        own_temp = folder / f".manifest.json.edgeopt-tmp-{os.getpid()}-00ff00ff"
        own_temp.write_text("")
        verdict = edgeopt.verify(folder, repair=True)
        assert verdict.ok and not verdict.problems
        assert "run live-run is in progress" in verdict.text()
        assert live.path("m.8.tflite").exists() and own_temp.exists()


def test_a_second_run_keeps_every_record_and_moves_files_whose_verdict_changed(folder):
    first = Manifest.load(folder)
    second = _publish(folder, [(1, "failed", b"model one, now failing"), (3, "ok", b"model three, now passing")])
    assert [a.id for a in second.artifacts] == ["m.1.tflite", "m.2.tflite", "m.3.tflite"]
    assert second.get("m.2.tflite").to_dict() == first.get("m.2.tflite").to_dict()  # untouched: kept as it was
    assert second.get("m.1.tflite").path == "failed/m.1.tflite" and not (folder / "m.1.tflite").exists()
    assert second.get("m.3.tflite").path == "m.3.tflite" and not (folder / "failed" / "m.3.tflite").exists()
    assert [r["id"] for r in second.runs] == [first.runs[0]["id"], second.runs[1]["id"]]
    assert all(r["finished"] for r in second.runs) and [a.id for a in second.of_run()] == ["m.1.tflite", "m.3.tflite"]
    assert edgeopt.verify(folder).ok


def test_every_published_file_gets_the_umask_mode_and_no_temp_name_has_a_model_suffix(folder):
    mask = os.umask(0o022)
    os.umask(mask)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in files)
    staging = Staging(folder, "run")
    assert not staging.path("m.int8.tflite").name.endswith((".tflite", ".onnx", ".keras"))
    staging.close()


def test_a_report_set_is_replaced_whole_and_loses_files_the_new_run_did_not_make(tmp_path):
    for files in ({"report.json": "1", "report.md": "1", "size.png": "1"}, {"report.json": "2", "report.md": "2"}):
        with staged_set(tmp_path, "bench-report") as staged:
            for name, text in files.items():
                (staged / name).write_text(text)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".edgeopt-sets.json", "report.json", "report.md"]
    assert (tmp_path / "report.md").read_text() == "2" and edgeopt.verify(tmp_path).ok


def test_a_failed_writer_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError), staged_set(tmp_path, "bench-report") as staged:
        (staged / "report.md").write_text("half")
        raise RuntimeError("plotting failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("make,pattern", [
    (lambda p: None, r"'.*nowhere' does not exist"),
    (lambda p: p.write_text("x"), r"'.*nowhere' is a file, not a folder"),
])
def test_verify_refuses_a_path_that_is_not_a_folder(tmp_path, make, pattern):
    make(tmp_path / "nowhere")
    with pytest.raises(OutputError, match=pattern):
        edgeopt.verify(tmp_path / "nowhere")


def test_verify_command_exit_codes(folder):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "edgeopt.cli", "verify", *map(str, args)], capture_output=True,
                              text=True, timeout=120)

    clean = run(folder)
    assert clean.returncode == 0 and "ok (3 files checked" in clean.stdout and "note: failed/m.3.tflite" in clean.stdout
    (folder / "m.1.tflite").write_bytes(b"changed")
    assert run(folder).returncode == 1
    repaired = run(folder, "--repair")
    assert repaired.returncode == 0 and "repaired: m.1.tflite differs from its record" in repaired.stdout
    not_a_folder = run(folder / "m.2.tflite")
    assert not_a_folder.returncode == 2 and "is a file, not a folder" in not_a_folder.stderr
    assert "Traceback" not in not_a_folder.stderr
