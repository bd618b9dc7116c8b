"""Walk the optimize sequence: for each step reuse an earlier run's model or run the step, save the model,
measure what it did, check it against the source model, and record it in the manifest.

The pipeline hands over a StepContext (data, the source model, how to record and write) and gets the
optimized model back with its lineage. A step that fails is recorded as failed, the steps after it as
skipped, and the exports go on from the last model that was produced (named as such).
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..check import compare
from ..data import is_synthetic
from ..errors import EdgeoptError
from ..manifest import Artifact
from . import measure
from .training import FineTuner, fine_tune_options


@dataclass
class StepContext:
    source: object  # the loaded model (tf_keras or Keras 3): the teacher 'source' and the first step's input
    source_key: str  # its sha256 (or fingerprint): the root of every cache key
    source_outputs: list  # its outputs on the evaluation inputs
    train: object | None  # data.Dataset
    evaluation: object
    seed: int
    versions: dict
    out: Path
    reusable: Callable  # (artifact id, cache key) -> Artifact from an earlier run, or None
    finish: Callable  # (Artifact, seconds, staged file or None) -> publishes the record with its file
    write_model: Callable  # (tf_keras model, artifact id) -> the staged file (published by finish)
    predict: Callable  # model -> outputs on the evaluation inputs
    progress: bool = True
    log: Callable = print


@dataclass
class Optimized:
    """Where the optimize sequence ended: the model the exports start from, and its lineage."""

    model: object
    parent_id: str | None
    parent_key: str
    name: str
    quantization_aware: bool = False


@dataclass
class _State:
    pruned: dict = field(default_factory=dict)  # layer names, m_by_n, block_size of the prune step
    clustered: dict = field(default_factory=dict)  # layer names, per_channel of the cluster step
    measured: dict = field(default_factory=dict)  # the last step's measurements: what the next must keep


def run_steps(planned, ctx: StepContext, name: str) -> Optimized:
    done = Optimized(ctx.source, None, ctx.source_key, name)
    state, teachers, failed = _State(), _Teachers(ctx), None
    for i, p in enumerate(planned):
        art_id = f"{done.name}.{p.step.tag(p.spec)}{p.step.file_suffix}"
        if failed:
            _record_skipped(ctx, p, art_id, done.parent_id, failed)
            continue
        ctx.log(f"optimize step {i + 1}/{len(planned)}: {p.name} ({p.where})")
        t0 = time.time()
        try:
            done = _one_step(ctx, p, art_id, done, state, teachers)
        except Exception as e:  # EdgeoptError: the user can act on it; anything else: a tool failed or a bug
            _record_failed(ctx, p, art_id, done.parent_id, e, time.time() - t0)
            failed = p.where
    return done


def _one_step(ctx, p, art_id, before, state, teachers) -> Optimized:
    teacher_key = teachers.key(p.teacher)
    data = ctx.train.describe() | {"synthetic": is_synthetic(ctx.train)} if ctx.train else None
    key = _key(before.parent_key, p.name, p.spec.model_dump(mode="json"), ctx.versions, data, ctx.seed, teacher_key)
    reused = ctx.reusable(art_id, key)
    if reused:
        ctx.log(f"reusing {art_id} (same model, options and data as before)")
        path = ctx.out / reused.path
        model = p.step.restore(_private_copy(before.model, ctx)[0], p.spec, path) if p.step.restore else load_saved(path)
        _remember(state, p, reused.facts.get("result", {}), reused.sparsity, reused.facts.get("distinct_values"))
        ctx.finish(reused, reused.seconds or 0.0)
        return Optimized(model, art_id, reused.sha256, _stem(art_id), before.quantization_aware or p.step.quantizes)
    t0 = time.time()
    model_in, facts = _private_copy(before.model, ctx)
    tuner = FineTuner(fine_tune_options(p.spec), teachers.objective_for(p), seed=ctx.seed, progress=ctx.progress,
                      log=ctx.log, name=p.name)
    mixed = getattr(p.spec, "mixed_precision", False)
    if mixed:
        from .precision import MIXED, with_policy

        model_in = with_policy(model_in, MIXED)
    model, result = p.step.run(model_in, p.spec, ctx.train, seed=ctx.seed, progress=ctx.progress, log=ctx.log,
                               fine_tune=tuner)
    if mixed:
        model = with_policy(model, "float32")
    staged = ctx.write_model(_without_optimizer(model, p.step.file_suffix), art_id)
    facts |= {"result": result, "training": tuner.records, "data": data, "teacher": teachers.describe(p.teacher)}
    art = _artifact(ctx, p, art_id, before.parent_id, key, model, facts, state, result)
    ctx.finish(art, time.time() - t0, staged)  # a failed check publishes the model under failed/
    quantization_aware = before.quantization_aware or p.step.quantizes
    return Optimized(model, art_id, art.sha256, _stem(art_id), quantization_aware)


def _private_copy(model, ctx):
    """A tf_keras copy the step may change: tfmot wraps layers in place, and the source is also the teacher."""
    from ..converter.keras_io import flavour, tf_keras

    if flavour(model) == "keras3":
        from ..converter.bridge import to_tf_keras

        ctx.log("the optimize steps need tf_keras: rebuilding the Keras 3 model in tf_keras and comparing outputs")
        return to_tf_keras(model, ctx.evaluation.take(64, seed=ctx.seed).x)
    keras = tf_keras()
    with _scopes():
        copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy, {}


def _without_optimizer(model, suffix):
    """The model as it is saved: for export, so without the optimizer state that would double the file.

    HDF5 takes include_optimizer=False; the .keras format saves a compiled model's optimizer, so an
    uncompiled copy is saved instead.
    """
    if suffix == ".h5" or getattr(model, "optimizer", None) is None:
        return model
    from ..converter.keras_io import tf_keras

    with _scopes():
        copy = tf_keras().models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _artifact(ctx, p, art_id, parent_id, key, model, facts, state, result) -> Artifact:
    from ..converter.keras_io import input_specs, output_specs

    before = state.measured
    _remember(state, p, result, None, None)
    measured = {"before": before}
    if state.pruned:
        measured["sparsity"] = measure.sparsity(model, state.pruned["layers"], state.pruned.get("m_by_n"),
                                                state.pruned.get("block_size"))
    if state.clustered:
        measured["distinct_values"] = facts["distinct_values"] = measure.distinct_values(
            model, state.clustered["layers"], state.clustered["per_channel"])
    state.measured = {k: v for k, v in measured.items() if k != "before"}
    check = compare(ctx.source_outputs, ctx.predict(model), "fp32", ctx.evaluation.y)  # figures; verdict below
    problems, tolerance = p.step.verify(p.spec, result, measured) if p.step.verify else ([], {})
    check.update({"passed": not problems, "problems": problems, "tolerance": tolerance, "compared_with": "source"})
    if p.step.quantizes:
        facts["quantization_aware"] = True
    return Artifact(
        id=art_id, path=art_id, format="keras", precision="fp32", stage=p.name, parent=parent_id,
        status="ok" if not problems else "failed", error="; ".join(problems) or None,
        options=_recorded_options(p.spec, facts.get("training")), tool_versions=ctx.versions,
        inputs=input_specs(model), outputs=output_specs(model), sparsity=measured.get("sparsity"), check=check,
        cache_key=key, facts=facts)


def _recorded_options(spec, training) -> dict:
    """The step's options as the manifest records them: `loss: auto` becomes the loss it trained with, by name."""
    options = spec.model_dump(mode="json")
    if options.get("loss") == "auto":
        objectives = [r.get("objective") or {} for r in training or []]
        used = next((o.get("loss") or o.get("task_loss") for o in objectives if o.get("loss") or o.get("task_loss")),
                    None)
        if used:
            options["loss"] = used
    return options


def _remember(state, p, result, sparsity, distinct):
    """Carry forward which layers earlier steps pruned or clustered, so later steps are checked to keep them."""
    if p.name == "prune":
        state.pruned = {"layers": list(result.get("layers", {})), "m_by_n": p.spec.m_by_n,
                        "block_size": list(p.spec.block_size)}
    elif p.name == "cluster":
        state.clustered = {"layers": list(result.get("layers", [])), "per_channel": p.spec.per_channel}
    elif p.step.replaces_model and p.step.replaces_model(p.spec):
        state.pruned, state.clustered = {}, {}
    if sparsity or distinct:
        state.measured = {k: v for k, v in (("sparsity", sparsity), ("distinct_values", distinct)) if v}


def _record_failed(ctx, p, art_id, parent_id, error, seconds):
    art = Artifact(id=art_id, path=None, format="keras", precision="fp32", stage=p.name, parent=parent_id,
                   status="failed", options=p.spec.model_dump(mode="json"), tool_versions=ctx.versions)
    if isinstance(error, EdgeoptError):
        art.error = f"{error}; the exports below start from the model before this step"
    else:
        art.error = f"unexpected {type(error).__name__}: {error}; the exports below start from the model before this step"
        art.notes.append(traceback.format_exc(limit=8))
    ctx.finish(art, seconds)


def _record_skipped(ctx, p, art_id, parent_id, failed):
    art = Artifact(id=art_id, path=None, format="keras", precision="fp32", stage=p.name, parent=parent_id,
                   status="skipped", error=f"not run: the earlier step {failed} failed",
                   options=p.spec.model_dump(mode="json"))
    ctx.finish(art, 0.0)


class _Teachers:
    """Teacher models, their outputs on the training data (computed once each), and their cache keys."""

    def __init__(self, ctx):
        self.ctx, self.models, self.outputs = ctx, {}, {}

    def model(self, teacher):
        if teacher not in self.models:
            if teacher == "source":
                self.models[teacher] = self.ctx.source
            else:
                from ..converter.keras_io import load_model

                self.models[teacher] = load_model(teacher).model
        return self.models[teacher]

    def key(self, teacher):
        if teacher is None:
            return None
        if teacher == "source":
            return self.ctx.source_key
        from ..fileio import sha256_tree

        return sha256_tree(Path(teacher))

    def describe(self, teacher):
        return None if teacher is None else {"model": teacher, "sha256": self.key(teacher)}

    def objective_for(self, p):
        """The FineTuner's objective factory for step `p`: built for the model it is handed (a student may be new)."""
        from .objective import build_objective

        def objective(model, train):
            outputs = self.teacher_outputs(p.teacher, train) if p.teacher else None
            return build_objective(model, train, fine_tune_options(p.spec), outputs, p.teacher, step=p.where)

        return objective

    def teacher_outputs(self, teacher, train):
        if teacher not in self.outputs:
            from .keras_training import predict

            self.ctx.log(f"teacher {teacher}: computing its outputs on {len(train)} training samples")
            outputs = predict(self.model(teacher), train.x)
            if len(outputs) != 1:
                raise EdgeoptError(f"teacher {teacher} has {len(outputs)} outputs; distillation needs one")
            self.outputs[teacher] = outputs[0]
        return self.outputs[teacher]


def load_saved(path):
    """A model an optimize step saved (QAT models need tfmot's scope to load)."""
    from ..converter.keras_io import tf_keras

    with _scopes():
        return tf_keras().models.load_model(path, compile=False)


def _scopes():
    from .precision import _scopes as scopes

    return scopes()


def _stem(art_id):
    return art_id.rsplit(".", 1)[0]


def _key(parent_key, stage, options, versions, data_facts, seed, teacher_key):
    blob = json.dumps([parent_key, stage, options, versions, data_facts, seed, teacher_key], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
