"""`edgeopt demo` meets the converter's promises on the bundled digits, run as a user runs it."""

import json
import os
import re
import subprocess
import sys

import edgeopt


def test_demo_produces_every_artifact_within_its_promises(tmp_path):
    (tmp_path / "systmp").mkdir()
    # Run as a user piping it to a file: progress on, stderr not a terminal.
    raw = subprocess.run([sys.executable, "-m", "edgeopt.cli", "demo", "--out", tmp_path / "demo"],
                         capture_output=True, timeout=600, env=dict(os.environ, TMPDIR=str(tmp_path / "systmp")))
    # Bytes decoded by hand: text mode would turn a bar's carriage returns into newlines.
    stdout, stderr = raw.stdout.decode(), raw.stderr.decode()
    assert raw.returncode == 0, stderr[-3000:]
    _console_is_edgeopts_own(stdout, stderr, tmp_path / "demo")
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
    fp32_dense = arts["digits_cnn.pruned50.fp32.tflite"]["facts"]["sparse_encoding"]["dense_bytes"]
    assert arts["digits_cnn.pruned50.int8.tflite"]["size_bytes"] <= 0.3 * fp32_dense
    assert arts["digits_cnn.pruned50.fp32.onnx"]["check"]["max_abs_error"] <= 1e-4
    assert "digits_cnn.pruned50.int8.tflite" in stdout and "agreement" in stdout
    # The demo ends with the benchmark of what it produced: every file measured at 1 and all cores.
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    files = {k for k, a in arts.items() if a["format"] != "keras"}
    assert {r["artifact"] for r in report["rows"]} == files
    assert all(r["status"] == "ok" and r["latency"]["p50_ms"] > 0 for r in report["rows"])
    assert (tmp_path / "demo" / "latency_vs_accuracy.png").exists() and (tmp_path / "demo" / "size.png").exists()
    assert "What each optimization bought" in stdout and "p50 ms (95% CI)" in stdout
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


def _console_is_edgeopts_own(stdout, stderr, out):
    """No TensorFlow log line or warning and no bar redrawn with carriage returns; they are in OUT/edgeopt.log."""
    console = stdout + stderr
    for noise in ("cuInit", "oneDNN", "cuda", "absl::InitializeLog", "fully_quantize", "Warning", "\r"):
        assert noise not in console, noise
    for done in (r"training: (\d+)/\1 steps in \d+s", r"benchmark on local: (\d+)/\1 runs in \d+s"):
        assert re.search(f"^{done}", stderr, re.M), (done, stderr)
    log = (out / "edgeopt.log").read_text()
    assert "edgeopt demo --out" in log and "UserWarning: You are saving your model as an HDF5 file" in log
    assert f"kept in {out / 'edgeopt.log'}" in stdout
