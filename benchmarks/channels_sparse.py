"""Unstructured pruning's sparse-encoded TFLite files against dense-encoded ones of the same weights.

Two models: the digits CNN pruned to 50% by edgeopt.convert (tfmot, fine-tuned), and MobileNetV2
with 75% of each 1x1 convolution's weights zeroed by magnitude (the case issue 13 describes). Each in
fp32 and int8, each encoded dense and sparse (TFLite's sparsity optimization), all benchmarked side
by side in one run: is the sparse file smaller, and does the runtime run it any faster?
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import edgeopt
from models import digits_as, mobilenet_v2
from suite_models import QUICK_TIMING, SUITE

PRECISIONS = ["fp32", "int8"]
MOBILENET_SPARSITY = 0.75


def run(work: Path, results: Path, quick: bool, rounds: int, log, measure=True) -> dict:
    """Make the files (once) and benchmark them; with measure=False, read the report an earlier run left."""
    work.mkdir(parents=True, exist_ok=True)
    files = []
    digits_model, pipeline_facts = _digits_pruned(work, quick, log)
    files += _both_encodings(lambda: digits_model, "digits_cnn.pruned50", digits_as("image", "calibration"), work, log)
    if not quick:
        files += _both_encodings(_mobilenet_sparse, "mobilenet_v2.sparse75", SUITE["mobilenet_v2"].calibration(quick),
                                 work, log)
    if not measure:
        return {"files": files, "report": edgeopt.Report.load(results), "pipeline_facts": pipeline_facts}
    log(f"sparse encoding: benchmarking {len(files)} files, {rounds} interleaved rounds, 1 thread")
    report = edgeopt.benchmark([f["path"] for f in files], threads=[1], rounds=rounds,
                               timing=QUICK_TIMING if quick else {"min_seconds": 0.5}, out=results,
                               progress=False, log=log)
    return {"files": files, "report": report, "pipeline_facts": pipeline_facts}


def _digits_pruned(work, quick, log):
    """The digits CNN pruned to 50% by the converter, and the facts it recorded about sparse encoding."""
    from edgeopt.converter.keras_io import tf_keras

    source = work / "digits_cnn.h5"
    if not source.exists():
        tf_keras().utils.set_random_seed(0)
        SUITE["digits_cnn"].build(quick).save(source)
    recipe = {"name": "digits_cnn", "prune": {"target_sparsity": 0.5, "epochs": 1 if quick else 8},
              "exports": [{"format": "tflite", "precision": p} for p in PRECISIONS]}
    manifest = edgeopt.convert(str(source), recipe, train="digits", calibration="digits", evaluation="digits",
                               out=work / "digits_cnn_pruned50", progress=False, log=log)
    pruned = next(a for a in manifest.artifacts if a.stage == "prune")
    facts = {a.id: a.facts.get("sparse_encoding") for a in manifest.artifacts if a.format == "tflite"}
    return tf_keras().models.load_model(manifest.path_of(pruned), compile=False), facts


def _mobilenet_sparse():
    model = mobilenet_v2()
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D" and layer.kernel_size == (1, 1):
            kernel, *rest = layer.get_weights()
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), MOBILENET_SPARSITY)] = 0.0
            layer.set_weights([kernel, *rest])
    return model


def _both_encodings(build, stem, calibration, work, log) -> list:
    """Each precision encoded dense and sparse; `build()` makes the model only when a file is missing."""
    from edgeopt.capabilities import default_options, find
    from edgeopt.converter import tflite
    from edgeopt.converter.serving import Serving

    paths = {(p, e): work / f"{stem}.{p}.{e}.tflite" for p in PRECISIONS for e in ("dense", "sparse")}
    missing = [key for key, path in paths.items() if not path.exists()]
    if missing:
        with Serving(build()) as serving:
            for precision, encoding in missing:
                log(f"  {paths[precision, encoding].name}")
                options = default_options(find("tflite", precision))
                blob = tflite.convert(serving, precision, options, calibration.take(200), sparse=encoding == "sparse")
                paths[precision, encoding].write_bytes(blob)
    return [{"id": path.name, "path": str(path), "model": stem, "precision": p, "encoding": e,
             "bytes": path.stat().st_size} for (p, e), path in paths.items()]
