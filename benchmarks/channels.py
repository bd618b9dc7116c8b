"""Channel pruning benchmark: does removing channels make models faster in every runtime?

For MobileNetV2-224 and the digits CNN: the dense model and the model with 30% and 50% of its
channels removed (edgeopt.steps.channels; the digits CNN fine-tuned after pruning, the random
MobileNetV2 not), once with the literal fractions and once with every group kept at a multiple of 16
channels (round_to: 16), each converted to TFLite fp32 and int8 and ONNX fp32 and int8 (QDQ and QOperator),
then every file of one model benchmarked side by side in one run (interleaved rounds, 1 thread).
Plus unstructured pruning's sparse-encoded TFLite files against dense-encoded ones of the same
weights. Results: benchmarks/results/channels/ (SUMMARY.md, summary.json, one report per run).

    .venv/bin/python benchmarks/channels.py --fresh            # the full run (about 25 minutes on 2 cores)
    .venv/bin/python benchmarks/channels.py --quick --models digits_cnn   # a smoke run in a few minutes
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # models/ and benchmarks/ are top-level folders, not installed packages
sys.path.insert(0, str(HERE))

import edgeopt  # noqa: E402  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

import channels_summary  # noqa: E402
from models import digits_as  # noqa: E402
from suite_models import QUICK_TIMING, SUITE  # noqa: E402

MODELS = ["digits_cnn", "mobilenet_v2"]
# variant -> (fraction of channels removed, round_to): the literal fractions, and the same fractions with
# every group kept at a multiple of 16 channels (onnxruntime's NCHWc block on AVX-512; see ChannelPruneSpec).
VARIANTS = {"channels30": (0.3, 1), "channels50": (0.5, 1), "channels30-r16": (0.3, 16), "channels50-r16": (0.5, 16)}
EXPORTS = [
    {"format": "tflite", "precision": "fp32"},
    {"format": "tflite", "precision": "int8"},
    {"format": "onnx", "precision": "fp32"},
    {"format": "onnx", "precision": "int8", "quant_format": "qdq"},
    {"format": "onnx", "precision": "int8", "quant_format": "qoperator"},
]
# The digits CNN is fine-tuned after pruning (labels exist); the random MobileNetV2 has nothing to learn.
PRUNE = {"digits_cnn": {"criterion": "l1", "epochs": 8}, "mobilenet_v2": {"criterion": "l1", "epochs": 0}}
ROUNDS = {"digits_cnn": 15, "mobilenet_v2": 15}
# Short measurements, many rounds: on a shared machine contention comes in bursts of seconds.
TIMING = {"digits_cnn": {"min_seconds": 0.3}, "mobilenet_v2": {"min_runs": 30, "min_seconds": 0.5}}
QUICK_ROUNDS = 2
SPARSE_ROUNDS = 7


def parse_args(argv):
    p = argparse.ArgumentParser(description="Benchmark channel pruning against dense models.")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of: {', '.join(MODELS)}")
    p.add_argument("--quick", action="store_true", help="short training, timing and rounds: a smoke run, not results")
    p.add_argument("--results", type=Path, default=None, help="default: benchmarks/results/channels")
    p.add_argument("--work", type=Path, default=None, help="model files (default: benchmarks/work/channels[-quick])")
    p.add_argument("--fresh", action="store_true", help="rebuild, re-prune and reconvert instead of reusing files")
    p.add_argument("--no-sparse", action="store_true", help="skip the sparse-encoding comparison")
    p.add_argument("--summarise-only", action="store_true",
                   help="rewrite SUMMARY.md and summary.json from the files and reports an earlier run left")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; this benchmark has {', '.join(MODELS)}")
    args.work = args.work or HERE / "work" / ("channels-quick" if args.quick else "channels")
    args.results = args.results or (args.work / "results" if args.quick else HERE / "results" / "channels")
    return args


def variants(name, work: Path, quick: bool, log) -> dict:
    """{variant: {path, record, accuracy}}: the dense model and each pruned one, built or pruned once."""
    from edgeopt.converter.keras_io import tf_keras
    from edgeopt.steps.channels import prune_channels

    folder = work / name / "keras"
    folder.mkdir(parents=True, exist_ok=True)
    dense_path = folder / f"{name}.h5"
    if not dense_path.exists():
        tf_keras().utils.set_random_seed(0)
        SUITE[name].build(quick).save(dense_path)
    dense = tf_keras().models.load_model(dense_path)
    out = {"dense": {"path": dense_path, "record": None, "accuracy": _accuracy(dense, name)}}
    train = digits_as("image", "train") if name == "digits_cnn" else None  # MobileNetV2 is not fine-tuned
    for variant, (fraction, round_to) in VARIANTS.items():
        path, record_path = folder / f"{name}.{variant}.h5", folder / f"{name}.{variant}.json"
        if not path.exists():
            prune = {**PRUNE[name], "target": fraction, "round_to": round_to}
            if quick:
                prune["epochs"] = min(prune["epochs"], 1)
            smaller, record = prune_channels(dense, prune, train, progress=False, log=log)
            smaller.save(path)
            record_path.write_text(json.dumps(record, indent=1))
        smaller = tf_keras().models.load_model(path, compile=False)
        out[variant] = {"path": path, "record": json.loads(record_path.read_text()),
                        "accuracy": _accuracy(smaller, name)}
    return out


def _accuracy(model, name):
    """Top-1 on the 540 held-out digits; None for the random MobileNetV2 (it has no accuracy)."""
    import numpy as np

    if name != "digits_cnn":
        return None
    ev = digits_as("image", "evaluation")
    return float(np.mean(np.argmax(model.predict(ev.x[0], verbose=0), -1) == ev.y))


def convert(name, variant, keras_path, work: Path, quick: bool, log):
    spec = SUITE[name]
    recipe = {"name": f"{name}.{variant}" if variant != "dense" else name, "exports": EXPORTS,
              "check": {"tolerances": spec.tolerances}, "data": {"calibration_samples": 32 if quick else 200}}
    return edgeopt.convert(str(keras_path), recipe, calibration=spec.calibration(quick),
                           evaluation=spec.evaluation(quick), out=work / name / variant, progress=False, log=log)


def benchmark(files, out: Path, rounds: int, timing: dict, log):
    return edgeopt.benchmark(files, threads=[1], rounds=rounds, timing=timing, out=out, progress=False, log=log)


def run_model(name, args, log) -> dict:
    """Build, prune, convert and benchmark one model (or, with --summarise-only, read what a run left)."""
    log(f"\n=== {name}: dense, and {', '.join(VARIANTS)}")
    built = variants(name, args.work, args.quick, log)
    files = []
    for variant, v in built.items():
        manifest = (edgeopt.Manifest.load(args.work / name / variant) if args.summarise_only
                    else convert(name, variant, v["path"], args.work, args.quick, log))
        for a in manifest.artifacts:
            if a.format in ("tflite", "onnx"):
                files.append({"variant": variant, "id": a.id, "path": str(manifest.path_of(a)) if a.path else None,
                              "format": a.format, "precision": a.precision, "status": a.status, "error": a.error,
                              "kind": _kind(a), "accuracy": (a.check or {}).get("accuracy")})
    if args.summarise_only:
        report = edgeopt.Report.load(args.results / name)
    else:
        timing = QUICK_TIMING if args.quick else TIMING[name]
        rounds = QUICK_ROUNDS if args.quick else ROUNDS[name]
        runnable = [f["path"] for f in files if f["status"] == "ok"]
        log(f"benchmarking {len(runnable)} files, {rounds} interleaved rounds, 1 thread")
        report = benchmark(runnable, args.results / name, rounds, timing, log)
    return {"variants": {k: {**v, "path": str(v["path"])} for k, v in built.items()}, "files": files,
            "report": report}


def _kind(artifact) -> str:
    """'tflite int8', 'onnx int8 qoperator': what a file is, whatever model variant it holds."""
    int8_onnx = artifact.format == "onnx" and artifact.precision == "int8"
    layout = artifact.options.get("quant_format") if int8_onnx else None
    return " ".join(filter(None, [artifact.format, artifact.precision, layout]))


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    if args.fresh and not args.summarise_only:
        shutil.rmtree(args.work, ignore_errors=True)
    args.results.mkdir(parents=True, exist_ok=True)
    runs = {name: run_model(name, args, print) for name in args.models}
    sparse = None
    if not args.no_sparse:
        import channels_sparse

        sparse = channels_sparse.run(args.work / "sparse", args.results / "sparse", args.quick,
                                     QUICK_ROUNDS if args.quick else SPARSE_ROUNDS, print,
                                     measure=not args.summarise_only)
    command = "python " + " ".join(["benchmarks/channels.py", *(argv if argv is not None else sys.argv[1:])])
    seconds = time.time() - t0
    if args.summarise_only:  # the figures are the measuring run's: keep its command and duration
        command, seconds = channels_summary.measured_by(args.results, command, seconds)
    written = channels_summary.write(args.results, runs, sparse, command=command, seconds=seconds,
                                     quick=args.quick)
    print(f"\nchannel benchmark done in {time.time() - t0:.0f}s: {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
