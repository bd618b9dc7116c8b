"""TFLite's quantization debugger on one model, in a child process: layer statistics and float fallbacks.

`tf.lite.experimental.QuantizationDebugger` re-quantizes the Keras model with the same converter
options and calibration data as the int8 export and adds NumericVerify ops: each layer's int8
output is compared with the float op run on the same (dequantized) input, so its statistics are
the error a layer adds on its own. The same debugger with `denylisted_nodes` makes the selective
models (see selective.tflite_int8).

TensorFlow's calibrator can crash the interpreter (SIGSEGV on recurrent loops), so explain calls
`run_isolated`, which runs everything in a child process: a crash costs the TFLite int8 part of
one explain run, not the run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConversionError

_TIMEOUT_S = 1800


def run_isolated(model_path, requests, calibration_x, debug_x, batch=None, trust_model_code=False, log=print):
    """Per request {id, options, stats: bool, keep_float: [[layer, ...], ...]}: {id: {"stats", "fallbacks"}}.

    `fallbacks` maps ", ".join(layers) to {"bytes", "facts"} (or {"error": ...}). Raises ConversionError
    when the child dies, naming how.
    """
    with tempfile.TemporaryDirectory(prefix="edgeopt-qdebug-") as tmp:
        job = Path(tmp)
        np.savez(job / "calibration.npz", **{f"x{i}": x for i, x in enumerate(calibration_x)})
        np.savez(job / "debug.npz", **{f"x{i}": x for i, x in enumerate(debug_x)})
        (job / "job.json").write_text(json.dumps({"model": str(model_path), "requests": requests, "batch": batch,
                                                  "trust_model_code": trust_model_code}))
        try:
            proc = subprocess.run([sys.executable, "-m", __name__, str(job)], capture_output=True, text=True,
                                  timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"TFLite's quantization debugger did not finish in {_TIMEOUT_S}s") from None
        if not (job / "result.json").exists():
            how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with {proc.returncode}"
            tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
            raise ConversionError(f"TFLite's quantization debugger {how}: {tail[-300:]}")
        result = json.loads((job / "result.json").read_text())
        for found in result.values():
            for layers, entry in found["fallbacks"].items():
                if "file" in entry:
                    entry["bytes"] = (job / entry.pop("file")).read_bytes()
        return result


def layer_statistics(converter, calibration, debug_x, options, batch) -> dict:
    """{op output tensor: {"mean_squared_error", "max_abs_error"}} from the debugger's NumericVerify ops.

    Keyed by the first name of the verified op's output tensor without trailing digits (the
    calibrated model adds some to keep names unique), as explain's taps name the same tensors.
    """
    import tensorflow as tf

    from .tflite import _representative, configure

    configure(converter, "int8", options, calibration, batch)
    debug = _Inputs(debug_x)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: _representative(debug, batch)())
    debugger.run()
    stats = {}
    for key, metrics in debugger.layer_statistics.items():
        tensor = key.split("/", 1)[1].rsplit(":", 1)[0]  # 'NumericVerify/<tensor>:<index>'
        stats[tensor_key(tensor)] = {"mean_squared_error": float(metrics["mean_squared_error"]),
                                     "max_abs_error": float(metrics["max_abs_error"])}
    return stats


def tensor_key(name: str) -> str:
    """'a/b/Relu;a/b/BiasAdd1' -> 'a/b/Relu': how a tensor is matched across the file and the debugger's model."""
    return re.sub(r"\d+$", "", name.split(";")[0])


class _Inputs:
    """The shape of calibration Dataset that tflite._representative reads: `x` (arrays) and len()."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x[0])


def _child(job: Path):
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from . import selective
    from .keras_io import load_model
    from .serving import Serving

    spec = json.loads((job / "job.json").read_text())
    loaded = load_model(spec["model"], trust_model_code=spec["trust_model_code"])
    keras3 = loaded.info.get("loader") == "keras3"
    from .keras_io import output_specs

    output_layers = [o["name"] for o in output_specs(loaded.model)]  # what selective names the outputs by
    calibration, debug_x = _Inputs(_load(job / "calibration.npz")), _load(job / "debug.npz")
    batch = spec["batch"] or 1
    result = {}
    with Serving(loaded.model, spec["batch"]) as serving:
        for request in spec["requests"]:
            found = result[request["id"]] = {"stats": None, "fallbacks": {}}
            if request.get("stats"):
                try:
                    found["stats"] = layer_statistics(serving.tflite_converter(), calibration, debug_x,
                                                      request["options"], batch)
                except Exception as e:  # the statistics are one figure among several: note and go on
                    found["stats_error"] = f"{type(e).__name__}: {str(e)[:300]}"
            for n, layers in enumerate(request.get("keep_float", [])):
                key = ", ".join(layers)
                try:
                    data, facts = selective.tflite_int8(serving.tflite_converter(), calibration, request["options"],
                                                        layers, batch, keras3, output_layers)
                    name = f"fallback-{len(result)}-{n}.tflite"
                    (job / name).write_bytes(data)
                    found["fallbacks"][key] = {"file": name, "facts": facts}
                except Exception as e:
                    found["fallbacks"][key] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    (job / "result.json").write_text(json.dumps(result))


def _load(path) -> list:
    with np.load(path) as z:
        return [z[f"x{i}"] for i in range(len(z.files))]


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
