"""optimize(): search the candidate space under a budget, measured on each target; recommend a file per target.

The loop is Optuna's ask/tell in batches: ask a batch of candidates (enqueued seeds first: the fp32
references, each single tool's default int8, edgeopt's defaults), convert the new ones (a local process
pool or Ray), measure every new file of the batch side by side on each target (interleaved rounds through
the harness), tell the study. Post-training candidates come first; training steps only when no
post-training file meets the budget on some target. Then each target's front is measured again together
with the single-tool baselines in one interleaved run, and the fastest file within budget is recommended.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .. import data as datalib
from ..errors import DataError, EdgeoptError, RecipeError
from ..fileio import check_writable_dir, sha256_tree
from ..recipe import build_recipe
from ..scratch import in_private_tempdir
from . import study as studylib
from .budget import Budget
from .figures import measurement_key, objective_values, points_for
from .outcome import SearchResult, write_outputs
from .recommend import best_per_file, pareto_front, recommend
from .runner import LocalRunner, RayRunner, target_resource  # noqa: F401 (target_resource: for users)
from .space import Space

EVALUATION_FILE = "evaluation.npz"
MAX_FINAL_FRONT = 6  # front points re-measured with the baselines; more would cost without changing the answer

# The budget judges accuracy, so the converter's own accuracy gates are opened (shape, I/O and a NaN still fail
# the check): a file edgeopt's defaults would reject may be within a user's budget, and vice versa.
OPEN_TOLERANCES = {"min_top1_agreement": 0.0, "max_accuracy_drop": 100.0, "min_cosine": -1.0,
                   "max_abs_error": 1e30, "max_rel_error": 1e30}


@in_private_tempdir
def optimize(model, *, budget=1.0, budget_metric="accuracy", max_latency_ms=None, max_size_bytes=None,
             targets=("local",), calibration=None, evaluation=None, train=None, trials=24, time_limit=None,
             training_trials=4, formats=None, precisions=None, threads=None, rounds=3, final_rounds=5,
             timing=None, samples=1000, batch_size=8, workers=1, ray=None, storage=None, study_name=None,
             seed=0, epochs=None, out="edgeopt-search", trust_model_code=False, log=print) -> SearchResult:
    """Search for the fastest file within `budget` on each target; see the README's "Choose for me".

    Args:
        model: .keras / .h5 / SavedModel path (an in-memory Keras model is saved into `out` first).
        budget: the loss allowed under `budget_metric`: 'accuracy' points (needs labels; without labels it
            becomes 'agreement' points with the source model), 'agreement' points, or 'max-error'.
        max_latency_ms / max_size_bytes: ceilings every recommended file must also meet.
        targets: where files are measured ('local', 'aarch64-emulated', 'ssh://user@host').
        calibration / evaluation / train: data as for `edgeopt.convert` (train enables training steps).
        trials: distinct post-training candidates to try (fewer when the space is smaller);
            training_trials: training candidates, tried only when no post-training file meets the budget.
        time_limit: seconds after which no new batch starts (the final measurement still runs).
        threads / rounds / timing / samples: as for `edgeopt.benchmark`; final_rounds for the final run.
        ray: None (a local process pool of `workers`), 'auto' or a Ray address.
        storage: an Optuna storage URL (default: SQLite in `out`); study_name to share a study by name.

    Returns a SearchResult: recommendations per target, every candidate, the fronts, the final runs.

    Gotchas: a search resumes from its study (same out/storage): finished candidates are never converted or
    measured again. Emulated targets time QEMU, not a device: their latencies rank files, nothing more.
    """
    search = _Search(locals())
    try:
        return search.run()
    finally:
        search.close()


class _Search:
    def __init__(self, args):
        self.a = args
        self.log = args["log"]
        self.budget_request = Budget(float(args["budget"]), args["budget_metric"], args["max_latency_ms"],
                                     args["max_size_bytes"])
        self._validate()
        self.out = check_writable_dir(args["out"])
        self.targets = list(dict.fromkeys(args["targets"] or ["local"]))
        self.runner = None

    def _validate(self):
        from ..bench.harness import _check_threads
        from ..bench.targets import parse_target

        problems = self.budget_request.problems()
        for name, flag in (("trials", "--trials"), ("batch_size", "--batch-size"), ("workers", "--workers"),
                           ("rounds", "--rounds"), ("final_rounds", "--final-rounds")):
            if int(self.a[name]) < 1:
                problems.append(f"{flag} must be at least 1, got {self.a[name]}")
        if problems:
            raise RecipeError(problems)
        for t in self.a["targets"] or ["local"]:
            parse_target(t)  # an unknown target is named before any work
        self.threads = _check_threads(self.a["threads"])

    # ---- setup -------------------------------------------------------------------------------------
    def _prepare(self):
        self.model_path = self._model_file()
        self.name = self.model_path.stem if self.model_path.suffix else self.model_path.name
        self.data = self._load_data()
        ev = self.data["evaluation"]
        labels = not isinstance(ev, str) and ev.y is not None
        self.budget = self.budget_request.for_data(labels)
        if self.budget is not self.budget_request:
            self.log("the evaluation data has no labels: the budget is points of top-1 agreement with the source model")
        calib = self.data.get("calibration")
        self.space = Space.build(self.a["formats"], self.a["precisions"],
                                 len(calib) if calib is not None and not isinstance(calib, str) else None,
                                 training=self.data.get("train") is not None, model_kinds=self._model_kinds())
        self.settings = {"threads": self.threads, "rounds": int(self.a["rounds"]), "timing": self.a["timing"] or {},
                         "samples": int(self.a["samples"])}
        self.context = {"model": sha256_tree(self.model_path), "data": self._data_context(), "seed": self.a["seed"],
                        "epochs": self.a["epochs"]}

    def _model_file(self) -> Path:
        model = self.a["model"]
        if model is None:
            raise RecipeError("no model given: pass a .keras/.h5 file or SavedModel folder")
        if not isinstance(model, (str, Path)):  # an in-memory Keras model: every candidate process loads a file
            path = self.out / "source" / f"{getattr(model, 'name', 'model')}.keras"
            path.parent.mkdir(parents=True, exist_ok=True)
            model.save(path)
            return path
        path = Path(model)
        if not path.exists():
            raise RecipeError(f"model {str(path)!r} does not exist")
        return path.resolve()

    def _model_kinds(self):
        """The kinds of layer that give some options meaning ({'recurrent'} or none), read from the file's
        architecture without loading it; None where the file does not say (then every option is searched)."""
        from ..converter.anatomy import RECURRENT
        from ..converter.keras_io import layer_classes

        classes = layer_classes(self.model_path)
        return None if classes is None else ({"recurrent"} if classes & RECURRENT else set())

    def _load_data(self) -> dict:
        sources = {"calibration": self.a["calibration"], "evaluation": self.a["evaluation"], "train": self.a["train"]}
        if sources["evaluation"] is None:  # every candidate must be checked on the same samples
            sources["evaluation"] = sources["calibration"] or datalib.SYNTHETIC
        loaded = {}
        for role, src in sources.items():
            if src is None or src == datalib.SYNTHETIC:
                loaded[role] = src
            else:
                loaded[role] = datalib.load(src, role)
        if loaded["calibration"] is None and any(c.needs_calibration for c in Space.build(
                self.a["formats"], self.a["precisions"]).exports):
            raise DataError("the int8 candidates need calibration data (a few hundred representative inputs): pass "
                            "--calibration calib.npz, or --precisions fp32,fp16,int8-dynamic to search without them")
        return {k: v for k, v in loaded.items() if v is not None}

    def _data_context(self) -> dict:
        import hashlib

        context = {}
        for role, ds in self.data.items():
            if isinstance(ds, str):
                context[role] = ds
                continue
            h = hashlib.sha256()
            for a in ds.x + ([ds.y] if ds.y is not None else []):
                h.update(a.tobytes())
            context[role] = {**ds.describe(), "sha256": h.hexdigest()}
        return context

    # ---- the search --------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        self._prepare()
        url = studylib.storage_url(self.a["storage"], self.out)
        name = studylib.study_name(self.context["model"], self.targets, self.budget.metric,
                                   {**self.settings, **self.context}, self.a["study_name"])
        self.study = studylib.open_study(url, name, self.targets, self.budget, self.a["seed"], self.log)
        self.runner = RayRunner(self.a["ray"], self.targets, self.log) if self.a["ray"] else \
            LocalRunner(self.a["workers"], self.log)
        self.deadline = time.time() + self.a["time_limit"] if self.a["time_limit"] else None
        self._stage("post-training", int(self.a["trials"]))
        if self.space.step_choices and self._targets_without_a_fit():
            self.log(f"no post-training file meets the budget on {', '.join(self._targets_without_a_fit())}: "
                     "trying training steps")
            self._stage("training", int(self.a["training_trials"]))
        result = self._finish(url, name)
        return result

    def _stage(self, stage, wanted):
        from .batch import run_batch

        size = self.space.size(stage)
        asked = 0
        while (self._distinct(stage) < min(wanted, size) or self._missing_seeds(stage, required_only=True)) \
                and asked < 20 * max(wanted, 1):
            if self.deadline and time.time() > self.deadline:
                self.log(f"time limit reached: {self._distinct(stage)} {stage} candidate(s) tried")
                return
            n = max(1, min(int(self.a["batch_size"]), min(wanted, size) - self._distinct(stage)))
            asked += run_batch(self, stage, n, max_asks=20 * max(wanted, 1) - asked)

    def _missing_seeds(self, stage, required_only=False) -> list:
        """Seeds not finished yet, in order; required: the fp32 references and the single-tool baselines, which
        the final comparison needs whatever --trials says (and whatever order a resumed search left)."""
        if stage != "post-training":
            return []
        done = studylib.finished_by_key(self.study)
        return [c for c in self.space.seeds() if c.key(self.context) not in done
                and (not required_only or c.role in ("reference", "baseline"))]

    def _distinct(self, stage) -> int:
        """Candidates of `stage` really tried (converted, or failed trying): a draw the declarations refuse is not."""
        return sum(1 for t in studylib.finished_by_key(self.study).values()
                   if t.user_attrs.get("stage") == stage and t.user_attrs.get("outcome") in ("ok", "failed"))

    def _targets_without_a_fit(self) -> list:
        entries = self.entries()
        return [t for t in self.targets
                if not any(p.feasible for p in points_for(entries, t, self.budget, self.source_accuracy()))]

    # ---- what the batches share ----------------------------------------------------------------------
    def job(self, key, candidate) -> dict:
        recipe = candidate.recipe(self.name, self.a["seed"], self.a["epochs"])
        recipe["check"] = {"tolerances": {p: dict(OPEN_TOLERANCES) for p in ("fp32", "fp16", "int8-dynamic", "int8")}}
        build_recipe(recipe)  # raises RecipeError for a combination the declarations refuse
        data = {k: v for k, v in self.data.items() if k != "train" or candidate.steps}
        return {"model": str(self.model_path), "recipe": recipe, "export": candidate.export, "data": data,
                "out": str(self.candidate_folder(key)), "trust_model_code": self.a["trust_model_code"]}

    def candidate_folder(self, key) -> Path:
        return self.out / "candidates" / key

    def evaluation_file(self) -> Path | None:
        """The search's evaluation data: inputs, labels and the *source* model's outputs (from an unpruned run)."""
        path = self.out / EVALUATION_FILE
        if path.exists():
            return path
        for t in studylib.finished_by_key(self.study).values():
            folder = self.candidate_folder(t.user_attrs["key"])
            if t.user_attrs.get("outcome") == "ok" and not t.user_attrs["candidate"]["steps"] and \
                    (folder / EVALUATION_FILE).exists():
                shutil.copyfile(folder / EVALUATION_FILE, path)
                return path
        return None

    def source_accuracy(self):
        """The source model's accuracy on the samples each file is scored on (the harness takes the first
        `samples`), so that a file's accuracy and the source's are compared on the same inputs."""
        from ..check import task_accuracy
        import numpy as np

        path = self.evaluation_file()
        if path is None:
            return None
        n = self.settings["samples"]
        with np.load(path) as z:
            if "y" not in z.files or "reference" not in z.files:
                return None
            return task_accuracy(z["reference"][:n], z["y"][:n])

    def measure(self, target, files: dict, out: Path, rounds=None):
        settings = {**self.settings, **({"rounds": rounds} if rounds else {})}
        return self.runner.measure(target, files, self.evaluation_file(), settings, out)

    def measurement_key(self, target):
        return measurement_key(target, self.settings)

    def entries(self) -> list:
        return [t.user_attrs for t in studylib.finished_by_key(self.study).values()]

    def values(self, attrs) -> list:
        return objective_values(attrs, self.targets, self.budget, self.source_accuracy())

    # ---- the answer ------------------------------------------------------------------------------------
    def _finish(self, url, name) -> SearchResult:
        entries = self.entries()
        source_acc = self.source_accuracy()
        fronts, finals, recs = {}, {}, {}
        for target in self.targets:
            points = best_per_file(points_for(entries, target, self.budget, source_acc))
            front = pareto_front(points)
            fronts[target] = [p.key for p in front]
            chosen = {p.key for p in front[:MAX_FINAL_FRONT]} | {
                e["key"] for e in entries if e["candidate"]["role"] in ("baseline", "reference") and e["outcome"] == "ok"}
            finals[target], recs[target] = self._final(target, [e for e in entries if e["key"] in chosen], source_acc)
            self.log(f"{target}: {recs[target].sentence}")
        result = SearchResult(out=self.out, study={"storage": studylib.public_url(url), "name": name},
                              budget=self.budget, targets=self.targets, candidates=entries, fronts=fronts,
                              final=finals, recommendations=recs, source_accuracy=source_acc,
                              settings={**self.settings, "final_rounds": int(self.a["final_rounds"])},
                              runner=self.runner.kind, model=str(self.model_path))
        write_outputs(result, self.log)
        return result

    def _final(self, target, entries, source_acc):
        """The front, the baselines and the fp32 references measured again together, in one interleaved run."""
        from .batch import file_name
        from .figures import failed_figures, figures_from_report
        from .recommend import Recommendation

        names = {e["key"]: file_name(e["key"], e) for e in entries}
        files = {names[e["key"]]: self.candidate_folder(e["key"]) / e["artifact"]["path"] for e in entries}
        slug = target_resource(target).removeprefix("edgeopt_target_")
        self.log(f"{target}: measuring the front and the baselines together ({len(files)} files, "
                 f"{self.a['final_rounds']} rounds)")
        try:
            report = self.measure(target, files, self.out / "final" / slug, rounds=int(self.a["final_rounds"]))
        except EdgeoptError as e:
            return [], Recommendation(target, None, f"the final measurement on {target} failed: {e}", [])
        found = figures_from_report(report, target)
        measured = [{**e, "figures": {target: found.get(names[e["key"]], failed_figures("no row came back"))}}
                    for e in entries]
        points = points_for(measured, target, self.budget, source_acc)
        return points, recommend(target, points, self.budget, emulated=any(r.emulated for r in report.rows))

    def close(self):
        if self.runner:
            self.runner.close()
