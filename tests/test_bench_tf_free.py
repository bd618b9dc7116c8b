"""The benchmark side never imports TensorFlow: it must install and run on a board without it."""

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import edgeopt
report = edgeopt.benchmark(sys.argv[1:], threads=[1], rounds=1, out=sys.argv[1] + ".report",
                           timing={"warmup_runs": 1, "min_runs": 3, "min_seconds": 0.01}, progress=False)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tf2onnx", "tensorflow_model_optimization"))
print(json.dumps({"heavy": heavy, "ok": [r.ok for r in report.rows]}))
"""


def test_benchmarking_imports_no_tensorflow(converted):
    _, out, _ = converted
    files = [str(out / "digits_cnn.pruned50.int8.tflite"), str(out / "digits_cnn.pruned50.int8.onnx")]
    result = subprocess.run([sys.executable, "-c", SCRIPT, *files], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"heavy": [], "ok": [True, True]}
