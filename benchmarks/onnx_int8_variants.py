"""ONNX int8 variants (s8, reduce_range, u8u8) on three CPUs: what each costs and where each is safe.

Every reference model is converted once into each variant (`int8_variant`, QDQ and QOperator), then
benchmarked in one `edgeopt.benchmark` call on this machine, the emulated x86-64-avx2 target (a
Haswell: x86 without VNNI) and the emulated aarch64 target: accuracy, agreement and error against the
float Keras model per target, and parity against onnxruntime's unfused execution. A second call on
this machine alone times each file (emulated latency means nothing). Results: results/onnx_int8_variants.json
and .md, with the CPU flags of every target.

    .venv/bin/python benchmarks/onnx_int8_variants.py                 # every model (~40 min on 2 shared cores)
    .venv/bin/python benchmarks/onnx_int8_variants.py --models digits_cnn --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import edgeopt  # noqa: E402  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

from suite_models import QUICK_TIMING, SUITE  # noqa: E402
import variants_table  # noqa: E402

VARIANTS = [("qdq", "s8"), ("qdq", "reduce_range"), ("qdq", "u8u8"), ("qoperator", "s8"),
            ("qoperator", "reduce_range")]
TARGETS = ["local", "x86-64-avx2", "aarch64-emulated"]
# Under emulation only the outputs count: a few runs to prove the file runs, then the outputs.
PARITY_TIMING = {"warmup_runs": 1, "min_runs": 3, "min_seconds": 0.0}
# MobileNetV2 int8 takes ~7 s an inference on the emulated Haswell (and fp32 longer): 8 images keep each
# emulated job inside the harness's per-job time limit. The digits models use all 540 held-out digits.
PARITY_SAMPLES = {"mobilenet_v2": 8}
SPEED_ROUNDS = 5


def exports() -> list:
    return [{"format": "onnx", "precision": "fp32"}] + [
        {"format": "onnx", "precision": "int8", "quant_format": fmt, "int8_variant": variant}
        for fmt, variant in VARIANTS]


def convert(spec, work: Path, quick: bool, log):
    source = spec.saved(work, quick)
    recipe = {"name": spec.name, "exports": exports(), "check": {"tolerances": spec.tolerances},
              "data": {"calibration_samples": 32 if quick else 200}}
    return edgeopt.convert(str(source), recipe, calibration=spec.calibration(quick),
                           evaluation=spec.evaluation(quick), out=work, progress=False, log=log)


def measure(spec, manifest, reports: Path, quick: bool, log) -> dict:
    parity = edgeopt.benchmark(manifest, targets=TARGETS, threads=[1], rounds=1, timing=PARITY_TIMING,
                               samples=PARITY_SAMPLES.get(spec.name, 1000), out=reports / "parity", progress=False,
                               log=log)
    speed = edgeopt.benchmark(manifest, targets=["local"], threads=[1], rounds=2 if quick else SPEED_ROUNDS,
                              timing=QUICK_TIMING if quick else spec.timing, out=reports / "speed",
                              progress=False, log=log)
    return variants_table.model_record(spec, manifest, parity, speed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="digits_cnn,digits_mlp,digits_conv1d,mobilenet_v2")
    p.add_argument("--quick", action="store_true", help="short training and timing (a smoke run, not results)")
    p.add_argument("--work", type=Path, default=None, help="model files (default: benchmarks/work/variants/full or /quick)")
    p.add_argument("--results", type=Path, default=None, help="default: benchmarks/results (work folder if --quick)")
    args = p.parse_args(argv)
    args.work = args.work or HERE / "work" / "variants" / ("quick" if args.quick else "full")  # never mix the two
    results = args.results or (args.work / "results" if args.quick else HERE / "results")
    t0 = time.time()
    command = "python benchmarks/onnx_int8_variants.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        spec = SUITE[name]
        print(f"\n=== {name}: {spec.note}", flush=True)
        started = time.time()
        manifest = convert(spec, args.work / name, args.quick, print)
        record = measure(spec, manifest, args.work / name / "reports", args.quick, print)
        record.update(command=command.strip(), seconds=round(time.time() - started))
        # Written after each model, beside the other models' earlier results: a subset rerun keeps them.
        written = variants_table.write(results, name, record, args.quick)
    print(f"\ndone in {time.time() - t0:.0f}s: {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
