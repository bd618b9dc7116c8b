"""convert(): validate the whole request, then load -> prune -> export -> check, one record per file.

Each step is isolated: a failing export is recorded as failed with its reason and the others go on.
The manifest is rewritten (atomically) after every step, so an interrupted run loses nothing done.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from pathlib import Path

from . import data as datalib
from .check import check_io, compare
from .errors import EdgeoptError, RecipeError
from .fileio import check_writable_dir, gzip_size, sha256_tree, tree_size, write_bytes_atomic
from .manifest import MANIFEST_NAME, Artifact, Manifest
from .naming import export_name, stem
from .recipe import Recipe, build_recipe, load_recipe
from .versions import tool_versions

EVALUATION_FILE = "evaluation.npz"


def convert(model=None, recipe=None, *, calibration=None, evaluation=None, train=None, out="edgeopt-out",
            reuse=True, progress=True, log=print) -> Manifest:
    """Run the converter and return the manifest (also written to `out/manifest.json`).

    Args:
        model: a tf_keras model, or a path to .keras / .h5 / SavedModel (default: the recipe's `model`).
        recipe: a Recipe, a dict, or a path to a YAML recipe (default: every export, no pruning).
        calibration / evaluation / train: data overriding the recipe's `data` section: an .npz path,
            'module:function', 'digits', an array, an (x, y) tuple or a Dataset.
        out: folder for the artifacts, manifest.json and evaluation.npz.
        reuse: keep artifacts from an earlier run into `out` whose inputs, options and tools are unchanged.

    Example:
        >>> manifest = edgeopt.convert("model.h5", {"exports": [{"format": "tflite", "precision": "int8"}]},
        ...                            calibration="calib.npz", out="out")  # doctest: +SKIP
        >>> [(a.id, a.status) for a in manifest.artifacts]  # doctest: +SKIP

    Gotchas: int8 exports need calibration data; pruning needs training data with labels.
    """
    recipe = _as_recipe(recipe)
    sources = {
        "train": train if train is not None else recipe.data.train,
        "calibration": calibration if calibration is not None else recipe.data.calibration,
        "evaluation": evaluation if evaluation is not None else recipe.data.evaluation,
    }
    model = model if model is not None else recipe.model
    _validate_request(recipe, model, sources)
    out = check_writable_dir(out)

    from .converter.keras_io import load_model  # TensorFlow loads here, not at `import edgeopt`

    t0 = time.time()
    loaded = load_model(model)
    if recipe.prune:
        from .converter.prune import check_prunable

        check_prunable(loaded.model)  # before any work: a subclassed model cannot be pruned
    log(f"loaded {loaded.info['name']} ({loaded.info['model_class']}, {loaded.info['params']:,} parameters, "
        f"with {loaded.info['loader']}) in {time.time() - t0:.1f}s")
    run = _Run(recipe, loaded, sources, Path(out), reuse, progress, log)
    return run.execute()


def _as_recipe(recipe) -> Recipe:
    if isinstance(recipe, (str, Path)):
        return load_recipe(recipe)
    return build_recipe(recipe or {})


def _validate_request(recipe, model, sources):
    problems = []
    if model is None:
        problems.append("no model given: pass a model or a path, or set `model:` in the recipe")
    needing = recipe.needs_calibration()
    if needing and sources["calibration"] is None:
        problems.append(
            f"{', '.join(needing)} need calibration data (a few hundred representative inputs): pass "
            "--calibration calib.npz (with an array 'x') or calibration=... in the API, or drop those exports"
        )
    if recipe.prune and sources["train"] is None:
        problems.append(
            "prune needs training data with labels for fine-tuning: pass --train train.npz (x and y) "
            "or train=... in the API, or drop `prune`"
        )
    if problems:
        raise RecipeError(problems)


class _Run:
    def __init__(self, recipe, loaded, sources, out, reuse, progress, log):
        self.recipe, self.loaded, self.out = recipe, loaded, out
        self.progress, self.log = progress, log
        self.versions = tool_versions()
        self.previous = _previous_manifest(out) if reuse else None
        model = loaded.model
        from .converter.keras_io import input_specs, output_specs

        self.input_specs, self.output_specs = input_specs(model), output_specs(model)
        self.data = self._load_data(sources)
        self.manifest = Manifest(
            source={k: v for k, v in loaded.info.items() if k not in ("inputs", "outputs")}
            | {"inputs": self.input_specs, "outputs": self.output_specs},
            recipe=recipe.to_dict(),
            data={role: ds.describe() for role, ds in self.data.items() if ds is not None},
            tool_versions=self.versions,
            root=out,
        )

    def _load_data(self, sources):
        r = self.recipe
        loaded = {}
        limits = {"train": None, "calibration": r.data.calibration_samples, "evaluation": r.data.evaluation_samples}
        for role, src in sources.items():
            ds = datalib.load(src, role)
            if ds is not None:
                ds = datalib.check_against_inputs(ds, self.input_specs, role)
                if limits[role]:
                    ds = ds.take(limits[role], seed=r.seed)
            loaded[role] = ds
        if loaded["evaluation"] is None:
            # Without evaluation data, check on calibration inputs, else on synthetic ones (and say so).
            loaded["evaluation"] = loaded["calibration"] or datalib.synthetic(
                self.input_specs, min(r.data.evaluation_samples, 256), seed=r.seed
            )
        return loaded

    # ---- the steps -------------------------------------------------------------------------------
    def execute(self) -> Manifest:
        model = self.loaded.model
        base_key = self.loaded.info.get("sha256") or _model_fingerprint(model)
        # Keras' own names ('sequential_3') say little; the user's file name usually says more.
        path = self.loaded.info.get("path")
        self.name = stem(self.recipe.name or (Path(path).stem if path else self.loaded.info["name"]), self.recipe.prune)
        parent_id, parent_key = None, base_key
        self.source_outputs = self._predict(model)
        if self.recipe.prune:
            model, parent_id, parent_key = self._prune(model, base_key)
        self.reference = self._predict(model) if parent_id else self.source_outputs
        ev = self.data["evaluation"]
        datalib.save_npz(self.out / EVALUATION_FILE, ev, self.reference)
        self.manifest.data["evaluation"] = {**ev.describe(), "path": EVALUATION_FILE,
                                            "synthetic": ev.source.startswith("synthetic")}
        self.manifest.save()
        onnx_parents = {}
        for spec in self.recipe.exports:
            if spec.format == "tflite":
                self._step(spec.format, spec.precision, spec.options, "tflite-convert", parent_id, parent_key,
                           lambda s=spec: self._tflite(model, s))
            else:
                opset = spec.options["opset"]
                if opset not in onnx_parents:
                    opts = {"opset": opset}
                    rec = self._step("onnx", "fp32", opts, "onnx-export", parent_id, parent_key,
                                     lambda o=opset: self._onnx_export(model, o))
                    onnx_parents[opset] = rec
                fp32 = onnx_parents[opset]
                if spec.precision != "fp32":
                    self._onnx_quantize(spec, fp32)
        self._summarise()
        return self.manifest

    def _prune(self, model, base_key):
        from .converter import prune as prunelib
        from .converter.keras_io import tf_keras

        spec = self.recipe.prune
        art_id = f"{self.name}.keras"
        key = _key(base_key, "prune", spec.model_dump(), self.versions, self.data["train"].describe(), self.recipe.seed)
        reused = self._reusable(art_id, key)
        if reused:
            self.log(f"reusing {art_id} (same model, options and data as before)")
            self.manifest.put(reused)
            return tf_keras().models.load_model(self.out / art_id, compile=False), art_id, reused.sha256
        self.log(f"pruning to {spec.target_sparsity:.0%} sparsity ({spec.schedule} schedule, {spec.epochs} epochs)")
        t0 = time.time()
        pruned, record, pruned_layers = prunelib.prune(model, self.data["train"], spec, self.recipe.seed, self.progress)
        from .fileio import atomic_path

        with atomic_path(self.out / art_id, suffix=".keras") as tmp:
            pruned.save(tmp)
        sparsity = prunelib.measure_sparsity(pruned, pruned_layers, spec.m_by_n)
        after = self._predict(pruned)
        ev = self.data["evaluation"]
        check = compare(self.source_outputs, after, "fp32", ev.y)  # figures only; the verdict is sparsity
        check.update(_prune_verdict(sparsity, prunelib.effective_target(spec)))
        art = Artifact(
            id=art_id, path=art_id, format="keras", precision="fp32", stage="prune", parent=None,
            status="ok" if check["passed"] else "failed",
            error=None if check["passed"] else "; ".join(check["problems"]),
            options=record, tool_versions=self.versions, inputs=self.input_specs, outputs=self.output_specs,
            sparsity=sparsity, check=check, cache_key=key,
        )
        self._finish(art, time.time() - t0)
        return pruned, art_id, art.sha256

    def _tflite(self, model, spec):
        from .converter import tflite

        return tflite.convert(model, spec.precision, spec.options, self.data["calibration"]), {}

    def _onnx_export(self, model, opset):
        from .converter import onnx_export

        return onnx_export.export(model, opset), {}

    def _onnx_quantize(self, spec, fp32_record):
        from .converter import onnx_quant

        if fp32_record.status != "ok" or not fp32_record.sha256:
            art = Artifact(id=export_name(self.name, "onnx", spec.precision, spec.options), path=None,
                           format="onnx", precision=spec.precision, stage="onnx-quantize", parent=fp32_record.id,
                           status="skipped", error=f"its fp32 parent {fp32_record.id} was not produced",
                           options=spec.options)
            self.manifest.put(art)
            self.manifest.save()
            return
        parent_path = self.out / fp32_record.path
        if spec.precision == "int8":
            build = lambda: onnx_quant.quantize_static(parent_path, self.data["calibration"], spec.options)  # noqa: E731
        else:
            build = lambda: onnx_quant.quantize_dynamic(parent_path)  # noqa: E731
        self._step("onnx", spec.precision, spec.options, "onnx-quantize", fp32_record.id, fp32_record.sha256, build)

    # ---- one export: reuse, build, write, inspect, check ------------------------------------------
    def _step(self, fmt, precision, options, stage, parent_id, parent_key, build) -> Artifact:
        from .converter.tflite import PartialQuantization

        art_id = export_name(self.name, fmt, precision, options)
        data_facts = self.data["calibration"].describe() if self._needs_calibration(fmt, precision) else None
        key = _key(parent_key, stage, options, self.versions, data_facts, self.recipe.seed)
        reused = self._reusable(art_id, key)
        if reused:
            self.log(f"reusing {art_id}")
            self.manifest.put(reused)
            self.manifest.save()
            return reused
        self.log(f"{fmt} {precision}: {stage} ...")
        art = Artifact(id=art_id, path=art_id, format=fmt, precision=precision, stage=stage, parent=parent_id,
                       options=dict(options), tool_versions=self.versions, cache_key=key)
        t0 = time.time()
        try:
            blob, facts = build()
            art.facts = facts
            write_bytes_atomic(self.out / art_id, blob)
            self._inspect_and_check(art)
        except PartialQuantization as e:
            write_bytes_atomic(self.out / art_id, e.model_bytes)  # kept for inspection, marked failed
            self._inspect_and_check(art)
            art.status, art.error = "failed", str(e)
        except EdgeoptError as e:
            art.status, art.error, art.path = "failed", str(e), None
        except Exception as e:  # a bug or an unforeseen tool failure: record it, keep the other exports
            art.status, art.path = "failed", None
            art.error = f"unexpected {type(e).__name__}: {e}"
            art.notes.append(traceback.format_exc(limit=6))
        self._finish(art, time.time() - t0)
        return art

    def _inspect_and_check(self, art):
        from .bench.device.runtimes import open_model

        m = open_model(str(self.out / art.path))
        art.inputs, art.outputs = m.input_specs, m.output_specs
        ev = self.data["evaluation"]
        got = m.predict(ev.x)
        check = compare(self.reference, got, art.precision, ev.y, self.recipe.check.tolerances)
        io_problems = check_io(m.output_specs, self.output_specs)
        check["problems"] = io_problems + check["problems"]
        check["passed"] = not check["problems"]
        if ev.source.startswith("synthetic"):
            check["synthetic_inputs"] = True
        art.check = check
        if not check["passed"]:
            art.status, art.error = "failed", "check against the Keras model failed: " + "; ".join(check["problems"])

    def _finish(self, art, seconds):
        if art.path and (self.out / art.path).exists():
            p = self.out / art.path
            art.sha256, art.size_bytes, art.gzip_bytes = sha256_tree(p), tree_size(p), gzip_size(p)
        art.seconds = round(seconds, 2)
        self.manifest.put(art)
        self.manifest.save()
        mark = "ok" if art.ok else art.status.upper()
        self.log(f"  -> {art.id}: {mark}" + (f" ({art.error})" if art.error else ""))

    def _reusable(self, art_id, key):
        prev = self.previous.get(art_id) if self.previous else None
        if not prev or prev.cache_key != key or not prev.path or not prev.sha256:
            return None
        path = self.out / prev.path
        return prev if path.exists() and sha256_tree(path) == prev.sha256 else None

    def _needs_calibration(self, fmt, precision):
        from .capabilities import find

        cap = find(fmt, precision)
        return bool(cap and cap.needs_calibration)

    def _predict(self, model):
        ev = self.data["evaluation"]
        out = model.predict(ev.x if len(ev.x) > 1 else ev.x[0], batch_size=256, verbose=0)
        return [o for o in (out if isinstance(out, list) else [out])]

    def _summarise(self):
        ok = len(self.manifest.ok)
        self.log(f"{ok}/{len(self.manifest.artifacts)} artifacts ok; manifest: {self.out / MANIFEST_NAME}")


def _prune_verdict(sparsity, target):
    problems = []
    # Rounding in per-layer pruning masks lands a hair under the target; 2% of the target is noise.
    if sparsity["model"] < target * 0.98:
        problems.append(f"measured sparsity {sparsity['model']:.3f} is below the target {target}")
    broken = [name for name, layer in sparsity["layers"].items() if layer.get("m_by_n_compliance", 1) not in (1, None)]
    if broken:
        problems.append(f"layers {', '.join(broken)} do not keep the M:N pattern in every group")
    return {"passed": not problems, "problems": problems, "tolerance": {"min_sparsity": round(target * 0.98, 4)}}


def _key(parent_key, stage, options, versions, data_facts, seed):
    blob = json.dumps([parent_key, stage, options, versions, data_facts, seed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _model_fingerprint(model):
    h = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()


def _previous_manifest(out):
    try:
        return Manifest.load(out) if (Path(out) / MANIFEST_NAME).exists() else None
    except EdgeoptError:
        return None  # an unreadable old manifest is simply not reused
