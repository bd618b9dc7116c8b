"""Why ai-edge-quantizer's int8 was 30x less exact than TFLiteConverter's on mnist_cnn_janithab, measured.

    .venv/bin/python benchmarks/realmodels/aeq_calibration.py            # about 2 minutes on 2 cores

One `edgeopt.convert` of the model (synthetic data: it ships without any; same calibration and check
inputs for every file): TFLiteConverter int8, ai-edge-quantizer int8 calibrated with its own default
merge (`calibration_method: moving_average`: an exponential moving average of each step's min/max) and
with the running min/max (`minmax`, edgeopt's default, as TFLiteConverter and onnxruntime calibrate).
All files take float32 I/O, so the error compares the quantized graphs, not the input rounding.
Writes aeq_calibration.json and aeq_calibration.md beside this script.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
MODEL = ROOT.parent / "shared" / "realmodels" / "mnist_cnn_janithab.h5"

import edgeopt  # noqa: E402  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

AEQ = {"format": "tflite", "precision": "int8", "backend": "ai-edge-quantizer", "io_type": "float32"}
FILES = [
    ("TFLiteConverter int8", {"format": "tflite", "precision": "int8", "io_type": "float32"}),
    ("ai-edge-quantizer int8, moving average (its default)", {**AEQ, "calibration_method": "moving_average"}),
    ("ai-edge-quantizer int8, running min/max (edgeopt's default)", AEQ),
]


def main() -> int:
    from edgeopt.table import render

    t0 = time.time()
    recipe = {"name": MODEL.stem, "exports": [e for _, e in FILES], "data": {"calibration_samples": 200}}
    manifest = edgeopt.convert(str(MODEL), recipe, calibration="synthetic", evaluation="synthetic",
                               out=ROOT / "benchmarks" / "work" / "aeq_calibration", progress=False, log=print)
    by_options = {json.dumps(a.options, sort_keys=True): a for a in manifest.artifacts if a.precision == "int8"}
    rows = []
    for label, export in FILES:
        options = {k: v for k, v in export.items() if k not in ("format", "precision")}
        art = next(a for a in by_options.values() if all(a.options.get(k) == v for k, v in options.items())
                   and a.options.get("backend", "tflite-converter") == options.get("backend", "tflite-converter")
                   and a.options.get("calibration_method", "minmax") == options.get("calibration_method", "minmax"))
        out = (art.check or {}).get("outputs", [{}])[0]
        rows.append({"label": label, "artifact": art.id, "status": art.status,
                     "max_abs_error": (art.check or {}).get("max_abs_error"), "mean_abs_error": out.get("mean_abs_error"),
                     "top1_agreement": (art.check or {}).get("top1_agreement"),
                     "calibration": (art.facts or {}).get("calibration")})
    base = rows[0]["max_abs_error"]
    table = [[r["label"], r["status"], f"{r['max_abs_error']:.2g}", f"{r['max_abs_error'] / base:.1f}x",
              f"{r['mean_abs_error']:.2g}", f"{r['top1_agreement']:.0%}"] for r in rows]
    md = ["# ai-edge-quantizer int8 calibration on mnist_cnn_janithab", "",
          f"Made by `python benchmarks/realmodels/aeq_calibration.py` ({time.time() - t0:.0f} s). 200 synthetic "
          "calibration inputs, 256 synthetic check inputs (the same for every file), float32 I/O; errors are "
          "against the Keras model's softmax output.", "",
          render(["file", "status", "max abs err", "vs TFLiteConverter", "mean abs err", "top-1 agree"], table,
                 markdown=True), ""]
    (HERE / "aeq_calibration.json").write_text(json.dumps({"model": MODEL.name, "rows": rows}, indent=1))
    (HERE / "aeq_calibration.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
