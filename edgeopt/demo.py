"""`edgeopt demo`: train a digits CNN offline, convert it every way, check and tabulate the results."""

from __future__ import annotations

import time
from pathlib import Path

from .scratch import in_private_tempdir

# Every format and precision, and both ONNX int8 layouts: what the demo and the benchmark suite produce.
EVERY_EXPORT = [
    {"format": "tflite", "precision": "fp32"},
    {"format": "tflite", "precision": "fp16"},
    {"format": "tflite", "precision": "int8-dynamic"},
    {"format": "tflite", "precision": "int8"},
    {"format": "onnx", "precision": "fp32"},
    {"format": "onnx", "precision": "int8-dynamic"},
    {"format": "onnx", "precision": "int8", "quant_format": "qdq"},
    {"format": "onnx", "precision": "int8", "quant_format": "qoperator"},
]

DEMO_RECIPE = {
    "name": "digits_cnn",
    "prune": {"target_sparsity": 0.5, "schedule": "polynomial", "epochs": 8, "learning_rate": 1e-3},
    "exports": EVERY_EXPORT,
}


DEMO_BENCH = {"rounds": 3, "timing": {"warmup_runs": 10, "min_runs": 50, "min_seconds": 0.5}}


@in_private_tempdir
def run_demo(out="edgeopt-demo", progress=True, log=print):
    from . import data
    from .bench.harness import benchmark
    from .bench.report import console
    from .converter.reference_models import digits_cnn, train_classifier
    from .pipeline import convert
    from .summary import conversion_table

    out = Path(out)
    t0 = time.time()
    log("edgeopt demo: a CNN for scikit-learn's 8x8 digits, trained here, then pruned, quantized and exported")
    train = data.digits("train")
    model = train_classifier(digits_cnn(), train, progress=progress)
    source = out / "source" / "digits_cnn.h5"
    source.parent.mkdir(parents=True, exist_ok=True)
    model.save(source)  # the converter starts from a file, as it would for a user
    manifest = convert(str(source), DEMO_RECIPE, train="digits", calibration="digits", evaluation="digits",
                       out=out, progress=progress, log=log)
    log("")
    log(conversion_table(manifest))
    log("\nbenchmarking every file (each in its own process, interleaved rounds) ...")
    report = benchmark(out, progress=progress, log=log, **DEMO_BENCH)
    log("")
    log(console(report))  # ends with what each optimization bought
    log(f"\nfiles, manifest.json, report.md and plots are in {out.resolve()} ({time.time() - t0:.0f}s)")
    return manifest, report
