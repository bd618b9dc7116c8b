"""Run one TFLite conversion from a SavedModel in a child process, so a crash costs one artifact.

TFLite's int8 calibrator runs the model in the TFLite interpreter; on recurrent WHILE loops it can
die with SIGSEGV, which no `except` catches. In a child process that becomes a ConversionError
for this export, and the other exports go on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConversionError

_TIMEOUT_S = 900


def convert(saved_model, precision, options, calibration, batch, suspects=()) -> bytes:
    """Convert in a child process; `suspects`: layers named if TensorFlow crashes (e.g. recurrent ones)."""
    from .tflite import PartialQuantization

    with tempfile.TemporaryDirectory(prefix="edgeopt-tflite-") as tmp:
        job = Path(tmp)
        (job / "job.json").write_text(json.dumps({"saved_model": str(saved_model), "precision": precision,
                                                  "options": options, "batch": batch}))
        if calibration is not None:
            np.savez(job / "calibration.npz", **{f"x{i}": x for i, x in enumerate(calibration.x)})
        try:
            result = subprocess.run([sys.executable, "-m", __name__, str(job)], capture_output=True, text=True,
                                     timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"TFLite {precision} conversion did not finish in {_TIMEOUT_S}s") from None
        if result.returncode < 0:
            name = signal.Signals(-result.returncode).name
            where = f"the WHILE loops of {', '.join(suspects)}" if suspects else "this model's ops"
            raise ConversionError(
                f"TFLite {precision} conversion crashed inside TensorFlow ({name}) while calibrating: TFLite's "
                f"int8 calibrator cannot run {where}. Export with recurrent: unroll (the default for int8) or fused; "
                "the other exports are unaffected (int8-dynamic gives int8 weights with float activations)"
            )
        error = job / "error.json"
        if error.exists():
            e = json.loads(error.read_text())
            if e["partial"]:
                raise PartialQuantization(e["message"], (job / "model.tflite").read_bytes())
            raise ConversionError(e["message"])
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise ConversionError(f"TFLite {precision} conversion failed in its child process: {tail[0][:400]}")
        return (job / "model.tflite").read_bytes()


def _child(job: Path):
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from ..data import Dataset
    from .tflite import PartialQuantization, configure_and_convert

    spec = json.loads((job / "job.json").read_text())
    calibration = None
    if (job / "calibration.npz").exists():
        with np.load(job / "calibration.npz") as z:
            calibration = Dataset([z[f"x{i}"] for i in range(len(z.files))], None, "calibration")
    converter = tf.lite.TFLiteConverter.from_saved_model(spec["saved_model"])
    try:
        data = configure_and_convert(converter, spec["precision"], spec["options"], calibration, spec["batch"])
    except PartialQuantization as e:
        (job / "model.tflite").write_bytes(e.model_bytes)
        (job / "error.json").write_text(json.dumps({"partial": True, "message": str(e)}))
        return
    except ConversionError as e:
        (job / "error.json").write_text(json.dumps({"partial": False, "message": str(e)}))
        return
    (job / "model.tflite").write_bytes(data)


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
