"""The benchmark suite's quick mode, on the digits CNN only: it runs end to end and writes sane files.

Speed goals live in the suite's results (benchmarks/results), not here: no timing thresholds.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_suite_on_digits_cnn_writes_summary_and_overhead(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--models", "digits_cnn",
         "--results", str(results), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    summary = json.loads((results / "summary.json").read_text())
    rows = summary["models"]["digits_cnn"]["rows"]
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)  # 8 exports + 4 by ai-edge-quantizer
    for r in rows:
        lo, hi = r["ci95_ms"]
        assert 0 < lo <= r["p50_ms"] <= hi
        assert 0.5 < r["accuracy"] <= 1.0
        assert r["verdict"] == "baseline" if r["precision"] == "fp32" else r["speedup"] > 0
    by_id = {r["artifact"]: r for r in rows}
    assert by_id["digits_cnn.fp32.tflite"]["size_ratio"] == 1.0
    assert by_id["digits_cnn.int8.tflite"]["size_ratio"] < 0.5
    verdicts = (summary["int8_slower_than_fp32"] + summary["int8_no_faster_than_fp32"]
                + summary["int8_faster_than_fp32"])
    assert len(verdicts) == 9  # every int8 file, classified once
    pairs = {p["aeq"]: p for p in summary["aeq_vs_tfliteconverter"]}
    assert set(pairs) == {f"digits_cnn.{s}.tflite" for s in ("int8.aeq", "int8-dynamic.aeq", "int8.16x8.aeq.int16-io",
                                                              "int8-dynamic.aeq.weight-only")}
    assert pairs["digits_cnn.int8.aeq.tflite"]["tfliteconverter"] == "digits_cnn.int8.tflite"
    assert all(p["speed_vs_tfliteconverter"] > 0 and p["max_abs_error"][0] is not None for p in pairs.values())
    assert summary["machine"]["cpu"]["cores"] >= 1

    overhead = json.loads((results / "overhead.json").read_text())
    (case,) = overhead["results"]
    assert case["case"] == "digits_cnn.tflite" and case["threads"] == 1
    assert len(case["round_harness_p50_ms"]) == len(case["round_bare_p50_ms"]) == 2
    assert case["runs_per_measurement"] == 100
    assert math.isfinite(case["ratio"]) and case["ratio"] > 0
    assert 0 < case["ratio_ci95"][0] <= case["ratio_ci95"][1]
    assert summary["overhead"]["results"][0]["ratio"] == case["ratio"]

    md = (results / "SUMMARY.md").read_text()
    for heading in ("## int8 against fp32", "## ai-edge-quantizer against TFLiteConverter", "## Harness overhead",
                    "## digits_cnn", "int8 SLOWER than fp32"):
        assert heading in md
    assert (results / "digits_cnn" / "report.json").exists() and (results / "digits_cnn" / "report.md").exists()
