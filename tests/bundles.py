"""A minimal benchmark bundle for target tests: models, inputs, plan.json and device/ in one folder.

(The harness builds real bundles; target tests only need the layout every target runs.)
"""

import json
import shutil
from pathlib import Path

import numpy as np

from edgeopt.bench.targets import DEVICE_DIR

QUICK_TIMING = {"warmup_runs": 1, "min_runs": 3, "min_seconds": 0.0, "max_seconds": 5.0}


def make_bundle(folder, models, x, rounds=1, timing=QUICK_TIMING, xnnpack=True) -> Path:
    """Copy `models` into folder/models, save `x` as the inputs, write one job per model with outputs saved.

    `xnnpack=False`: LiteRT's own kernels instead of its default XNNPACK delegate.
    """
    folder = Path(folder)
    (folder / "models").mkdir(parents=True)
    shutil.copytree(DEVICE_DIR, folder / "device", ignore=shutil.ignore_patterns("__pycache__"))
    np.savez(folder / "inputs.npz", x=x)
    jobs = []
    for model in map(Path, models):
        shutil.copy(model, folder / "models" / model.name)
        jobs.append({"id": model.name, "model": f"models/{model.name}", "threads": 1, "inputs": "inputs.npz",
                     "timing": timing, "save_outputs": True, "xnnpack": xnnpack})
    (folder / "plan.json").write_text(json.dumps({"jobs": jobs, "rounds": rounds, "job_timeout_seconds": 120}))
    return folder


def outputs_of(bundle, job_id, threads=1) -> Path:
    return Path(bundle) / "outputs" / f"{job_id}.t{threads}.npz"
