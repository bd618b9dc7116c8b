"""Bad benchmark input: a clear error before anything runs, or a failed row with the reason; never lost rows."""

import json
import subprocess
import sys

import numpy as np
import pytest

import edgeopt
from edgeopt.bench.device import runner
from edgeopt.errors import BenchmarkError

QUICK = {"warmup_runs": 1, "min_runs": 3, "min_seconds": 0.01}


def bench(files, tmp_path, **kw):
    return edgeopt.benchmark(files, threads=[1], rounds=1, timing=QUICK, out=tmp_path / "report",
                             progress=False, log=lambda *_: None, **kw)


@pytest.fixture()
def good_tflite(converted):
    _, out, _ = converted
    return out / "digits_cnn.pruned50.fp32.tflite"


@pytest.mark.parametrize("name,content,reason", [
    ("notes.txt", b"just some text, not a model", "neither a TFLite"),
    ("broken.tflite", None, "cannot read 'broken.tflite'"),  # a real model cut short
    ("broken.onnx", b"\x08\x07\x12\x04junk" * 10, "cannot read 'broken.onnx'"),
])
def test_a_bad_file_is_a_failed_row_and_the_others_still_run(good_tflite, tmp_path, name, content, reason):
    bad = tmp_path / name
    bad.write_bytes(content if content is not None else good_tflite.read_bytes()[:3000])
    report = bench([good_tflite, bad], tmp_path)
    rows = {r.artifact: r for r in report.rows}
    assert rows[good_tflite.name].status == "ok"
    assert rows[name].status == "failed" and reason in rows[name].error
    assert (tmp_path / "report" / "report.json").exists()


def test_evaluation_data_of_the_wrong_shape_fails_the_rows_naming_both_shapes(good_tflite, tmp_path):
    np.savez(tmp_path / "eval.npz", x=np.zeros((10, 28, 28, 1), np.float32))
    report = bench([good_tflite], tmp_path, evaluation=tmp_path / "eval.npz")
    (row,) = report.rows
    assert row.status == "failed"
    assert "(28, 28, 1)" in row.error and "(8, 8, 1)" in row.error and "'image'" in row.error


@pytest.mark.parametrize("labels,match", [
    (np.full(10, 12), "labels go up to 12 but .* has 10 outputs"),
    (np.zeros((10, 3), np.float32), "labels of shape \\(3,\\) do not match the 10 outputs"),
    (np.zeros(7, np.int64), "different sample counts"),
])
def test_labels_that_cannot_belong_to_the_model_are_refused_up_front(good_tflite, tmp_path, labels, match):
    np.savez(tmp_path / "eval.npz", x=np.zeros((10, 8, 8, 1), np.float32), y=labels)
    with pytest.raises(BenchmarkError, match=match):
        bench([good_tflite], tmp_path, evaluation=tmp_path / "eval.npz")
    assert not (tmp_path / "report").exists()  # refused before any work or output


@pytest.mark.parametrize("kwargs,match", [
    ({"threads": [0]}, "thread counts must be whole numbers of at least 1, got 0"),
    ({"threads": [2, -1]}, "got -1"),
    ({"rounds": 0}, "rounds must be at least 1"),
])
def test_bad_settings_are_refused(good_tflite, tmp_path, kwargs, match):
    with pytest.raises(BenchmarkError, match=match):
        edgeopt.benchmark([good_tflite], out=tmp_path, progress=False, log=lambda *_: None, **kwargs)


def test_missing_files_and_empty_folders_are_refused(tmp_path):
    with pytest.raises(BenchmarkError, match="does not exist"):
        bench([tmp_path / "nope.tflite"], tmp_path)
    with pytest.raises(BenchmarkError, match="no manifest.json and no .tflite or .onnx files"):
        bench(tmp_path, tmp_path)


def test_cli_thread_count_zero_exits_2_with_the_reason(good_tflite, tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgeopt.cli", "bench", str(good_tflite), "--threads", "0",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "at least 1, got 0" in result.stderr


def _plan(tmp_path, good_tflite, ids=("a", "b")):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.tflite").write_bytes(good_tflite.read_bytes())
    np.savez(tmp_path / "inputs.npz", x=np.zeros((2, 8, 8, 1), np.float32))
    jobs = [{"id": i, "model": "models/m.tflite", "threads": 1, "inputs": "inputs.npz", "timing": QUICK} for i in ids]
    (tmp_path / "plan.json").write_text(json.dumps({"jobs": jobs, "rounds": 2, "job_timeout_seconds": 2}))
    return tmp_path / "plan.json"


@pytest.mark.parametrize("worker_command,reason", [
    (["sh", "-c", "sleep 30", "--"], "timed out after 2s (the worker was killed)"),
    (["sh", "-c", "kill -9 $$", "--"], "was killed by signal 9"),
    (["/nonexistent/python"], "cannot start the worker"),
])
def test_a_hung_or_killed_worker_is_a_failed_measurement_not_a_lost_run(good_tflite, tmp_path, worker_command, reason):
    results = runner.run_plan(_plan(tmp_path, good_tflite), worker_command=worker_command)
    # Each job fails once and is not repeated in the second round; results.json is complete.
    assert [(m["id"], m["status"]) for m in results["measurements"]] == [("a", "failed"), ("b", "failed")]
    assert all(reason in m["error"] for m in results["measurements"])
    assert json.loads((tmp_path / "results.json").read_text())["measurements"] == results["measurements"]


def test_the_runner_repeats_good_jobs_every_round(good_tflite, tmp_path):
    results = runner.run_plan(_plan(tmp_path, good_tflite))
    assert [(m["id"], m["round"], m["status"]) for m in results["measurements"]] == [
        ("a", 0, "ok"), ("b", 0, "ok"), ("a", 1, "ok"), ("b", 1, "ok")]
