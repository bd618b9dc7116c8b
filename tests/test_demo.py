"""`edgeopt demo` meets the converter's promises on the bundled digits, run as a user runs it."""

import json
import os
import subprocess
import sys

import edgeopt


def test_demo_produces_every_artifact_within_its_promises(tmp_path):
    (tmp_path / "systmp").mkdir()
    result = subprocess.run([sys.executable, "-m", "edgeopt.cli", "demo", "--out", tmp_path / "demo", "--quiet"],
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, TMPDIR=str(tmp_path / "systmp")))
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    arts = {a["id"]: a for a in manifest["artifacts"]}
    assert all(a["status"] == "ok" for a in arts.values()), {k: a["error"] for k, a in arts.items()}
    wanted = {("tflite", p) for p in ("fp32", "fp16", "int8-dynamic", "int8")} | {("onnx", "fp32"), ("onnx", "int8")}
    assert wanted <= {(a["format"], a["precision"]) for a in arts.values()}
    pruned = arts["digits_cnn.pruned50.keras"]
    assert pruned["sparsity"]["model"] >= 0.49
    for art_id in ("digits_cnn.pruned50.int8.tflite", "digits_cnn.pruned50.int8.onnx"):
        check = arts[art_id]["check"]
        assert abs(check["accuracy"] - check["reference_accuracy"]) <= 0.015, art_id
    assert arts["digits_cnn.pruned50.int8.tflite"]["size_bytes"] <= 0.3 * arts["digits_cnn.pruned50.fp32.tflite"]["size_bytes"]
    assert arts["digits_cnn.pruned50.fp32.onnx"]["check"]["max_abs_error"] <= 1e-4
    assert "digits_cnn.pruned50.int8.tflite" in result.stdout and "agreement" in result.stdout
    # The demo ends with the benchmark of what it produced: every file measured at 1 and all cores.
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    files = {k for k, a in arts.items() if a["format"] != "keras"}
    assert {r["artifact"] for r in report["rows"]} == files
    assert all(r["status"] == "ok" and r["latency"]["p50_ms"] > 0 for r in report["rows"])
    assert (tmp_path / "demo" / "latency_vs_accuracy.png").exists() and (tmp_path / "demo" / "size.png").exists()
    assert "What each optimization bought" in result.stdout and "p50 ms (95% CI)" in result.stdout
    # Every file has the mode the user's umask gives, never mkstemp's private 0600; the folder verifies clean,
    # and nothing of the run is left in the system temp folder.
    mask = os.umask(0o022)
    os.umask(mask)
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in (tmp_path / "demo").rglob("*")
             if p.is_file()}
    assert set(modes.values()) == {oct(0o666 & ~mask)}, modes
    verdict = edgeopt.verify(tmp_path / "demo")
    assert verdict.ok and not verdict.problems, verdict.text()
    assert list((tmp_path / "systmp").iterdir()) == []
