"""The harness measures every converter artifact for real (LiteRT, onnxruntime) and reports every field."""

import json
import re
import shutil

import numpy as np
import pytest

import edgeopt
from edgeopt.bench.report import Report

QUICK = {"warmup_runs": 2, "min_runs": 5, "min_seconds": 0.02}


@pytest.fixture(scope="module")
def bench_dir(converted, tmp_path_factory):
    """A copy of the converter's output folder, benchmarked once with 1 and 2 threads."""
    _, out, _ = converted
    folder = tmp_path_factory.mktemp("bench") / "converted"
    shutil.copytree(out, folder)
    report = edgeopt.benchmark(folder, threads=[1, 2], rounds=2, timing=QUICK, progress=False, log=lambda *_: None)
    return folder, report


def test_every_artifact_gets_a_row_per_thread_count_all_ok(bench_dir, converted):
    folder, report = bench_dir
    manifest, _, _ = converted
    files = [a.id for a in manifest.artifacts if a.format in ("tflite", "onnx")]
    assert sorted((r.artifact, r.threads) for r in report.rows) == sorted((f, t) for f in files for t in (1, 2))
    assert all(r.status == "ok" for r in report.rows), [(r.artifact, r.error) for r in report.rows if not r.ok]


def test_each_row_has_latency_memory_accuracy_and_work_done(bench_dir):
    _, report = bench_dir
    for r in report.rows:
        lat = r.latency
        assert lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        assert lat["ci95_ms"][0] <= lat["p50_ms"] <= lat["ci95_ms"][1]
        assert lat["runs"] >= 2 * QUICK["min_runs"] and len(lat["round_p50_ms"]) == 2
        assert lat["throughput_per_s"] > 0 and lat["std_ms"] >= 0
        assert r.load_seconds > 0 and r.first_inference_ms > 0
        assert r.memory_mb["peak"] > 10 and r.memory_mb["load_delta"] is not None
        assert r.macs == 719_488  # 8x8x32x9 + 6x6x64x288 + 576x64 + 64x10 at batch 1
        assert r.gmacs_per_s == pytest.approx(r.macs / (lat["p50_ms"] / 1000) / 1e9)
        # The digits CNN is ~95% accurate; every artifact keeps it within the converter's tolerances.
        assert 0.9 < r.accuracy["value"] <= 1.0 and r.accuracy["top1_agreement"] >= 0.95
        assert r.size_bytes > 0 and r.size_ratio > 0


def test_speedups_refer_to_the_fp32_file_of_the_same_format_and_thread_count(bench_dir):
    _, report = bench_dir
    for r in report.rows:
        assert r.speedup["vs"] == f"digits_cnn.pruned50.fp32.{r.format}"
        lo, hi = r.speedup["ci95"]
        assert lo <= hi and r.speedup["within_noise"] == (lo <= 1.0 <= hi)
        if r.artifact == r.speedup["vs"]:
            assert r.speedup["ratio"] == 1.0 and r.size_ratio == 1.0 and r.accuracy["delta_points"] == 0.0
    int8 = next(r for r in report.rows if r.artifact == "digits_cnn.pruned50.int8.tflite")
    assert int8.size_ratio < 0.35


def test_reports_and_plots_are_written_and_reload(bench_dir):
    folder, report = bench_dir
    for name in ("report.json", "report.md", "latency_vs_accuracy.png", "size.png"):
        assert (folder / name).stat().st_size > 1000, name
    again = Report.load(folder)
    assert [(r.artifact, r.threads, r.latency["p50_ms"]) for r in again.rows] == \
        [(r.artifact, r.threads, r.latency["p50_ms"]) for r in report.rows]
    d = json.loads((folder / "report.json").read_text())
    machine = d["targets"][0]["machine"]
    assert machine["cpu"]["arch"] and machine["cpu"]["cores"] >= 1 and "avx2" in machine["cpu"]["features"]
    assert machine["versions"]["onnxruntime"] and machine["versions"]["ai-edge-litert"]
    assert d["reference"]["accuracy"] > 0.9
    md = (folder / "report.md").read_text()
    assert "artifact (digits_cnn.pruned50.…)" in md and "| int8.tflite " in md and "latency_vs_accuracy.png" in md
    assert "## What each optimization bought (1 thread, against the fp32 file of the same format)" in md
    assert "\n- digits_cnn.pruned50.int8.tflite: " in md
    # The machine is a table a person reads, not a JSON blob.
    machines = md.split("## Machines", 1)[1]
    assert re.search(r"\| ISA features +\| .*AVX2", machines) and re.search(r"\| onnxruntime +\| 1\.", machines)
    assert "{" not in machines
    tflite = next(r for r in report.rows if r.format == "tflite")
    assert tflite.delegates == ["XNNPACK"]


def test_standalone_files_without_data_are_timed_on_synthetic_inputs(converted, tmp_path):
    _, out, _ = converted
    files = [out / "digits_cnn.pruned50.fp32.tflite", out / "digits_cnn.pruned50.int8.tflite",
             out / "digits_cnn.pruned50.int8.onnx"]
    report = edgeopt.benchmark(files, threads=[1], rounds=1, timing=QUICK, out=tmp_path, progress=False,
                               log=lambda *_: None)
    assert report.evaluation["synthetic"] and all(r.ok for r in report.rows)
    by_id = {r.artifact: r for r in report.rows}
    # The precision is read from each graph; agreement is with the fp32 file of the same format.
    assert by_id["digits_cnn.pruned50.int8.tflite"].precision == "int8"
    assert by_id["digits_cnn.pruned50.int8.tflite"].accuracy["vs"] == "digits_cnn.pruned50.fp32.tflite"
    assert by_id["digits_cnn.pruned50.int8.tflite"].accuracy["cosine"] > 0.9
    # No onnx fp32 file to compare with: the only onnx file is its own baseline.
    assert by_id["digits_cnn.pruned50.int8.onnx"].speedup["vs"] == "digits_cnn.pruned50.int8.onnx"
    assert by_id["digits_cnn.pruned50.int8.onnx"].macs == 719_488


def test_user_evaluation_data_and_metric(converted, tmp_path):
    _, out, _ = converted
    with np.load(out / "evaluation.npz") as z:
        np.savez(tmp_path / "eval.npz", x=z["x"][:100], y=z["y"][:100])
    report = edgeopt.benchmark([out / "digits_cnn.pruned50.fp32.onnx"], threads=[1], rounds=1, timing=QUICK,
                               evaluation=tmp_path / "eval.npz", metric="tests.metrics:error_rate",
                               out=tmp_path, progress=False, log=lambda *_: None)
    (row,) = report.rows
    assert report.evaluation["samples"] == 100 and row.accuracy["metric"] == "tests.metrics:error_rate"
    assert 0.0 <= row.accuracy["value"] < 0.1


def test_files_calibrated_on_synthetic_inputs_are_marked_in_the_report(model_h5, tmp_path):
    from edgeopt.bench.report import console

    edgeopt.convert(str(model_h5), {"exports": [{"format": "tflite", "precision": "int8"}]},
                    calibration="synthetic", out=tmp_path, progress=False, log=lambda *_: None)
    report = edgeopt.benchmark(tmp_path, threads=[1], rounds=1, timing=QUICK, progress=False, log=lambda *_: None)
    (row,) = report.rows
    assert row.ok and row.synthetic_calibration
    assert "ok (synthetic calibration)" in console(report)
    assert Report.load(tmp_path).rows[0].synthetic_calibration


def test_two_files_with_the_same_name_from_different_folders_are_both_measured(converted, tmp_path):
    _, out, _ = converted
    for sub, name in (("a", "digits_cnn.pruned50.fp32.tflite"), ("b", "digits_cnn.pruned50.int8.tflite")):
        (tmp_path / sub).mkdir()
        shutil.copy(out / name, tmp_path / sub / "model.tflite")
    report = edgeopt.benchmark([tmp_path / "a" / "model.tflite", tmp_path / "b" / "model.tflite"], threads=[1],
                               rounds=1, timing=QUICK, out=tmp_path / "r", progress=False, log=lambda *_: None)
    # Told apart by their folders; each row holds its own file's measurement only.
    assert [(r.artifact, r.precision, r.status) for r in report.rows] == [
        ("a/model.tflite", "fp32", "ok"), ("b/model.tflite", "int8", "ok")]
    assert all(len(r.latency["round_p50_ms"]) == 1 for r in report.rows)
