"""The benchmark suite: every reference model through edgeopt.convert and edgeopt.benchmark, then the
harness-overhead check, then SUMMARY.md and summary.json. See benchmarks/README.md.

    .venv/bin/python benchmarks/run.py                       # the full run (~9 min on 2 cores)
    .venv/bin/python benchmarks/run.py --quick --models digits_cnn   # seconds-scale smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # models/ and benchmarks/ are top-level folders, not installed packages
sys.path.insert(0, str(HERE))

import edgeopt  # noqa: E402  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

from edgeopt.console import LOG_NAME, native_output_captured  # noqa: E402
from edgeopt.demo import EVERY_EXPORT  # noqa: E402
from suite_models import AEQ_EXPORTS, QUICK_TIMING, SUITE  # noqa: E402
import summary  # noqa: E402

THREADS, ROUNDS = [1, 2], 5
OVERHEAD_ROUNDS = 20  # short rounds, many of them: on a shared machine, contention comes in bursts
QUICK_THREADS, QUICK_ROUNDS = [1], 2
OVERHEAD_CASES = [("mobilenet_v2", "tflite"), ("mobilenet_v2", "onnx"), ("digits_cnn", "tflite")]


def parse_args(argv):
    p = argparse.ArgumentParser(description="Run the edgeopt benchmark suite on the reference models.")
    p.add_argument("--models", default=",".join(SUITE), help=f"comma-separated subset of: {', '.join(SUITE)}")
    p.add_argument("--quick", action="store_true",
                   help="short training, timing and calibration, 1 thread, 2 rounds (a smoke run, not results)")
    p.add_argument("--results", type=Path, default=None,
                   help="where reports go (default: benchmarks/results, or benchmarks/work/quick/results with --quick)")
    p.add_argument("--work", type=Path, default=None, help="model files (default: benchmarks/work[/quick])")
    p.add_argument("--fresh", action="store_true", help="retrain and reconvert instead of reusing the work folder")
    p.add_argument("--no-overhead", action="store_true", help="skip the harness-overhead check")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in SUITE]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; the suite has {', '.join(SUITE)}")
    args.work = args.work or (HERE / "work" / ("quick" if args.quick else "full"))
    args.results = args.results or (args.work / "results" if args.quick else HERE / "results")
    return args


def convert_model(spec, work: Path, quick: bool, log):
    """Train (where it can be) and save the model once, then convert it; the converter reuses unchanged files."""
    source = spec.saved(work, quick)
    recipe = {"name": spec.name, "exports": EVERY_EXPORT + AEQ_EXPORTS, "check": {"tolerances": spec.tolerances},
              "data": {"calibration_samples": 32 if quick else 200}}
    return edgeopt.convert(str(source), recipe, calibration=spec.calibration(quick),
                           evaluation=spec.evaluation(quick), out=work, progress=False, log=log)


def benchmark_model(spec, manifest, results: Path, quick: bool, log):
    timing = QUICK_TIMING if quick else spec.timing
    return edgeopt.benchmark(manifest, threads=QUICK_THREADS if quick else THREADS,
                             rounds=QUICK_ROUNDS if quick else ROUNDS, timing=timing, out=results,
                             progress=False, log=log)


def run_overhead(manifests: dict, out: Path, quick: bool, log) -> bool:
    """The overhead check in a TensorFlow-free process of its own, on the fp32 files it can find."""
    cases = []
    for name, fmt in OVERHEAD_CASES:
        m = manifests.get(name)
        art = next((a for a in m.artifacts if a.format == fmt and a.precision == "fp32" and a.ok), None) if m else None
        if art:
            cases.append(f"{name}.{fmt}={m.path_of(art)}")
    if not cases:
        log("overhead: none of its models were run; skipped")
        return False
    argv = [sys.executable, str(HERE / "overhead.py"), *cases, "--out", str(out)]
    argv += ["--threads", ",".join(map(str, QUICK_THREADS if quick else THREADS))]
    argv += ["--rounds", "2", "--runs", "100"] if quick else ["--rounds", str(OVERHEAD_ROUNDS)]
    log(f"overhead check: {', '.join(c.split('=')[0] for c in cases)}")
    subprocess.run(argv, check=True)
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    if args.fresh:
        shutil.rmtree(args.work, ignore_errors=True)
    manifests = {}
    for name in args.models:
        spec = SUITE[name]
        print(f"\n=== {name}: {spec.note}", flush=True)
        work, results = args.work / name, args.results / name
        results.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        with native_output_captured(work / LOG_NAME):  # TensorFlow's own lines go there, not to the console
            manifests[name] = convert_model(spec, work, args.quick, print)
        benchmark_model(spec, manifests[name], results, args.quick, print)
    if not args.no_overhead:
        run_overhead(manifests, args.results / summary.OVERHEAD_JSON, args.quick, print)
    command = "python " + " ".join([os.path.relpath(__file__, ROOT), *(argv if argv is not None else sys.argv[1:])])
    written = summary.write(args.results, command=command, seconds=time.time() - t0, quick=args.quick,
                            notes={name: SUITE[name].note for name in SUITE})
    print(f"\nsuite done in {time.time() - t0:.0f}s: {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
