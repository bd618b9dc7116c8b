"""`edgeopt bench` prints the table, writes the report, and fails users' CI on a real regression."""

import json
import re
import shutil
import subprocess
import sys

import pytest


def edgeopt(*args):
    return subprocess.run([sys.executable, "-m", "edgeopt.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


QUICK = ["--threads", "1", "--rounds", "1", "--min-runs", "3", "--min-seconds", "0.01", "--warmup-runs", "1",
         "--quiet"]


@pytest.fixture(scope="module")
def benched(converted, tmp_path_factory):
    _, out, _ = converted
    folder = tmp_path_factory.mktemp("cli") / "out"
    folder.mkdir()
    for name in ("digits_cnn.pruned50.fp32.tflite", "digits_cnn.pruned50.int8.tflite"):
        shutil.copy(out / name, folder / name)
    result = edgeopt("bench", folder, *QUICK)
    return folder, result


def test_bench_prints_a_table_and_writes_the_report(benched):
    folder, result = benched
    assert result.returncode == 0, result.stderr
    assert re.search(r"\nint8\.tflite +tflite +int8 +1 ", result.stdout) and "p50 ms (95% CI)" in result.stdout
    assert "What each optimization bought (1 thread, against the fp32 file of the same format):" in result.stdout
    assert re.search(r"\n  digits_cnn\.pruned50\.int8\.tflite: 0\.\d\dx the size, ", result.stdout)
    # A folder of files without a manifest gets its report beside them, as a converter folder does.
    report = json.loads((folder / "report.json").read_text())
    assert [r["status"] for r in report["rows"]] == ["ok", "ok"]
    assert (folder / "latency_vs_accuracy.png").exists() and (folder / "report.md").exists()


def _write_old(folder, tmp_path, factor):
    """An earlier report whose timings were `factor` times the current ones (narrow intervals)."""
    report = json.loads((folder / "report.json").read_text())
    for row in report["rows"]:
        p50 = row["latency"]["p50_ms"] * factor
        row["latency"].update(p50_ms=p50, ci95_ms=[p50 * 0.999, p50 * 1.001])
    (tmp_path / "old.json").write_text(json.dumps(report))
    return tmp_path / "old.json"


def test_compare_fails_with_exit_3_when_artifacts_got_slower(benched, tmp_path):
    folder, _ = benched
    old = _write_old(folder, tmp_path, 0.25)  # the old run was 4x faster
    result = edgeopt("bench", folder, *QUICK, "--out", tmp_path / "new", "--compare", old,
                     "--fail-on-regression", "10%")
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("regression: ") == 2 and "limit +10%" in result.stderr


def test_compare_passes_when_nothing_got_slower(benched, tmp_path):
    folder, _ = benched
    old = _write_old(folder, tmp_path, 4.0)
    result = edgeopt("bench", folder, *QUICK, "--out", tmp_path / "new", "--compare", old,
                     "--fail-on-regression", "10%")
    assert result.returncode == 0, result.stderr
    assert "no regression against" in result.stdout


def test_fail_on_regression_without_compare_is_bad_input(benched):
    folder, _ = benched
    result = edgeopt("bench", folder, "--fail-on-regression", "10%")
    assert result.returncode == 2 and "needs --compare" in result.stderr
