"""The search benchmark: `edgeopt.optimize --budget 1.0` on a reference model, on local and emulated aarch64.

Writes into benchmarks/results/search/<model>/: search.json and search.md (every candidate, the front, the
final side-by-side run of the front with the fp32 references and the single-tool default int8 files, the
recommendation per target), front-<target>.png, and each target's final bench report (report.json/.md: the
machine's CPU, flags, OS and runtime versions).

    .venv/bin/python benchmarks/search.py --models digits_cnn                  # ~10 min on 2 shared cores
    .venv/bin/python benchmarks/search.py --models digits_cnn --targets local  # local only
    .venv/bin/python benchmarks/search.py --models mobilenet_v2                # ~15 min; one search per target,
                                                                               # results in mobilenet_v2/<target>/
    .venv/bin/python benchmarks/search.py --models mobilenet_v2_digits         # the same network trained here on
                                                                               # upscaled digits (training ~15 min)

The search's own work folder (study.db, every candidate's files) is benchmarks/work/search/<model>; a rerun
resumes its study (nothing is converted or measured twice) unless --fresh. Emulated latency is QEMU's: it
ranks files on aarch64 kernels, it is not a board's latency.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import edgeopt  # noqa: E402  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

from suite_models import SUITE, TRAINED  # noqa: E402

MODELS = {**SUITE, **TRAINED}

# Per model: how much of the space to try and how long to time (the emulated target is ~20x slower).
# A model with `per_target` overrides searches each target on its own (one study each, one results subfolder
# each); the targets share the work folder, so each candidate is converted once (the converter's reuse).
SETTINGS = {
    "digits_cnn": dict(trials=10, threads=[1], rounds=1, final_rounds=3, batch_size=5,
                       timing={"min_runs": 30, "min_seconds": 0.3}),
    "mobilenet_v2": dict(trials=10, precisions=["fp32", "int8"], threads=[1], rounds=1, final_rounds=2,
                         batch_size=5, budget_metric="agreement", timing={"min_runs": 5, "min_seconds": 0.2},
                         # QEMU runs a MobileNetV2 fp32 inference in seconds: few runs and evaluation samples.
                         per_target={"aarch64-emulated": dict(samples=8, timing={"warmup_runs": 1, "min_runs": 2,
                                                                                 "min_seconds": 0.0})}),
    # Trained (benchmarks/suite_models.py TRAINED): int8 files are judged on accuracy against labels.
    "mobilenet_v2_digits": dict(trials=10, precisions=["fp32", "int8"], threads=[1], rounds=1, final_rounds=3,
                                batch_size=5, timing={"min_runs": 5, "min_seconds": 0.2},
                                per_target={"aarch64-emulated": dict(samples=8, timing={"warmup_runs": 1, "min_runs": 2,
                                                                                        "min_seconds": 0.0})}),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="digits_cnn", help="comma-separated: " + ", ".join(SETTINGS))
    p.add_argument("--targets", default="local,aarch64-emulated")
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--fresh", action="store_true", help="start a new study (the old work folder is removed)")
    p.add_argument("--results", default=str(HERE / "results" / "search"))
    p.add_argument("--work", default=str(HERE / "work" / "search"))
    args = p.parse_args(argv)
    for name in args.models.split(","):
        spec, work, results = MODELS[name], Path(args.work) / name, Path(args.results) / name
        if args.fresh:
            shutil.rmtree(work, ignore_errors=True)
        source = spec.saved(work, quick=False)
        for targets, settings, results_dir in searches(name, args.targets.split(","), results):
            t0 = time.time()
            result = edgeopt.optimize(str(source), budget=args.budget, targets=targets,
                                      calibration=spec.calibration(False), evaluation=spec.evaluation(False),
                                      out=work / "out", **settings)
            print(f"{name} on {', '.join(targets)}: searched in {time.time() - t0:.0f}s")
            publish(result, results_dir)
    return 0


def searches(name, targets, results: Path) -> list:
    """[(targets, optimize settings, results folder)]: one search for all targets, or one per target when the
    model's settings override some targets (their results go into results/<target>/)."""
    from edgeopt.search.outcome import slug

    settings = dict(SETTINGS[name])
    per_target = settings.pop("per_target", None)
    if not per_target:
        return [(targets, settings, results)]
    return [([t], {**settings, **per_target.get(t, {})}, results / slug(t)) for t in targets]


def publish(result, results: Path):
    """Copy the report set and each target's final bench report (with the machine's CPU flags) into results."""
    from edgeopt.search.outcome import slug

    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    for name in ["search.json", "search.md"] + [f"front-{slug(t)}.png" for t in result.targets]:
        if (result.out / name).exists():
            shutil.copy(result.out / name, results / name)
    for target in result.targets:
        final = result.out / "final" / slug(target).replace("-", "_")
        for name in ("report.json", "report.md"):
            if (final / name).exists():
                shutil.copy(final / name, results / f"final-{slug(target)}.{name}")


if __name__ == "__main__":
    sys.exit(main())
