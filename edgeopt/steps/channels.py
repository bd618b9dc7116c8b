"""Structured channel pruning: remove whole filters and channels, and rebuild a smaller dense model.

Unstructured sparsity leaves every multiply in place for the dense kernels the runtimes run; a model
with fewer channels does fewer operations in every runtime. The step ranks channel classes (see
channel_graph) by a criterion, removes the least important fraction of every prunable group, proves
the surgery, and fine-tunes (optionally distilling from the original model).

Example:
    >>> spec = ChannelPruneSpec(target=0.3, criterion="l1", epochs=4)
    >>> smaller, record = prune_channels(model, spec, train)  # doctest: +SKIP
    >>> record["macs"]["before"], record["macs"]["after"]  # doctest: +SKIP

Gotchas: the input model is never modified; input and output shapes never change; a layer edgeopt
cannot follow stops the step with ChannelPruningError naming it. A Keras 3 model is pruned through a
tf_keras copy (converter.bridge), so the result is a tf_keras model.
"""

from __future__ import annotations

import fnmatch
import math
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import DataError, RecipeError
from .channel_layers import ChannelPruningError

__all__ = ["ChannelPruneSpec", "ChannelPruningError", "MacBudget", "prune_channels"]

_CHECK_SAMPLES = 32
_BISECTION_STEPS = 30


class MacBudget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    macs: float = Field(gt=0.0, lt=1.0, description="keep at most this fraction of the model's multiply-accumulates")


class ChannelPruneSpec(BaseModel):
    """What to prune and how; validated like the recipe (unknown fields are refused)."""

    model_config = ConfigDict(extra="forbid")

    structure: Literal["channels"] = "channels"
    target: float | MacBudget = Field(
        0.3, description="fraction of the channels removed from every prunable group, or {macs: f}: the "
        "fraction chosen so the model keeps at most f of its multiply-accumulates")
    criterion: Literal["l1", "l2", "bn_scale", "taylor"] = "l1"
    schedule: Literal["one-shot", "gradual"] = Field(
        "one-shot", description="one-shot: prune, then fine-tune; gradual: `steps` rounds of prune + fine-tune")
    steps: int = Field(3, ge=2, le=50, description="pruning rounds of the gradual schedule")
    epochs: int = Field(4, ge=0, le=1000, description="fine-tuning epochs in all (0: no fine-tuning)")
    distill: bool = Field(False, description="fine-tune towards the original model's outputs as well as the labels")
    distill_weight: float = Field(0.5, ge=0.0, le=1.0)
    temperature: float = Field(4.0, gt=0.0)
    layers: list[str] | None = Field(
        None, description="name patterns (fnmatch): prune only groups whose producer layers all match")
    round_to: int = Field(
        1, ge=1, le=512, description="keep a multiple of this many channels per group: runtimes run channel "
        "counts in blocks (onnxruntime's NCHWc convolutions need multiples of 16 with AVX-512, 8 with AVX2), "
        "so 16 keeps x86 kernels on their fast paths")
    min_channels: int = Field(1, ge=1, description="never keep fewer channels than this in a group")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0, description="peak rate of the cosine-decayed Adam fine-tuning")
    loss: str = Field("auto", description="a Keras loss name, or 'auto' (the model's compiled loss, else inferred)")

    @model_validator(mode="after")
    def _consistent(self):
        if isinstance(self.target, float) and not 0.0 < self.target < 1.0:
            raise ValueError(f"target must be a fraction of channels between 0 and 1 (exclusive), got {self.target}")
        if self.schedule == "gradual" and self.epochs < self.steps:
            raise ValueError(f"the gradual schedule fine-tunes after each of its {self.steps} steps: epochs must be "
                             f"at least {self.steps}, got {self.epochs} (or use schedule: one-shot)")
        if self.distill and self.epochs == 0:
            raise ValueError("distill fine-tunes towards the original model: it needs epochs of at least 1")
        return self

    @property
    def needs_labels(self) -> bool:
        return self.epochs > 0 or self.criterion == "taylor"


def as_spec(spec) -> ChannelPruneSpec:
    """A ChannelPruneSpec from a spec or a dict; RecipeError listing every problem otherwise."""
    if isinstance(spec, ChannelPruneSpec):
        return spec
    try:
        return ChannelPruneSpec.model_validate(spec or {})
    except ValidationError as e:
        raise RecipeError([f"channel pruning {'.'.join(map(str, err['loc'])) or 'spec'}: {err['msg']}"
                           for err in e.errors()]) from None


def prune_channels(model, spec, train, *, seed=0, progress=True, log=print, fine_tune=None):
    """Remove channels from `model` per `spec`; return (the smaller tf_keras model, a record for the manifest).

    Args:
        model: a Sequential or Functional tf_keras or Keras 3 model (never modified).
        spec: a ChannelPruneSpec or a dict of its fields.
        train: training data with labels (needed to fine-tune, for taylor and for distill): an
            edgeopt.data.Dataset, an .npz path (x, y), 'module:function', 'digits' or an (x, y) tuple;
            None is allowed for epochs 0 with a weight criterion (the surgery is then proven on synthetic inputs).
        fine_tune: callable(model, train, epochs, *, teacher=None) -> model; default: channel_training's.

    The record holds, per layer, the channels kept and removed (indices of the original filters), and
    the multiply-accumulates and parameters before and after, and the surgery proof of every step.
    """
    from ..converter.keras_io import tf_keras

    spec = as_spec(spec)
    train = _as_dataset(train)
    if spec.needs_labels and (train is None or train.y is None):
        raise DataError("channel pruning with fine-tuning (epochs > 0) or the taylor criterion needs training data "
                        "with labels: pass train data (x and y), or set epochs: 0 with criterion l1, l2 or bn_scale")
    t0 = time.time()
    model, bridge_facts, check_inputs = _prepared(model, train, seed, log)
    tf_keras().utils.set_random_seed(seed)
    run = _Run(model, spec, train, seed, progress, log, fine_tune)
    smaller = run.execute(check_inputs)
    record = run.record(smaller, time.time() - t0)
    if bridge_facts:
        record["bridge"] = bridge_facts
    return smaller, record


def _as_dataset(train):
    from .. import data as datalib

    return datalib.load(train, "train")


def _prepared(model, train, seed, log):
    """(a tf_keras model, bridge facts, inputs the surgery is proven on)."""
    from .. import data as datalib
    from ..converter.anatomy import input_ranges
    from ..converter.keras_io import flavour, input_specs

    fixed_batch = model.inputs[0].shape[0] if model.inputs else None
    n = fixed_batch or _CHECK_SAMPLES  # a model with a fixed batch is checked on one batch of it
    if train is not None and len(train) >= n:
        inputs = train.take(n, seed=seed).x
    else:
        inputs = datalib.synthetic(input_specs(model), n, seed, input_ranges(model)).x
    facts = {}
    if flavour(model) == "keras3":
        from ..converter.bridge import to_tf_keras

        log("channel pruning needs tf_keras: rebuilding the Keras 3 model in tf_keras and comparing outputs")
        model, facts = to_tf_keras(model, inputs)
    return model, facts, inputs


class _Run:
    """One pruning run: the schedule of prune-and-fine-tune steps, and what each did."""

    def __init__(self, model, spec, train, seed, progress, log, fine_tune):
        from .channel_graph import build
        from .channel_training import make_fine_tune

        self.original, self.spec, self.train, self.log = model, spec, train, log
        self.fine_tune = fine_tune or make_fine_tune(spec, seed, progress)
        self.graph = build(model)
        self.sizes = {g.key: len(g.removable) for g in self.graph.groups()}
        self.origin = {n.path: list(range(len(n.output))) for n in self.graph.producers()}
        self.steps, self.notes = [], []
        self.loss = None
        if spec.criterion == "taylor":
            from ..converter.prune import resolve_loss

            self.loss = _loss_object(resolve_loss(model, train, spec.loss)[0])

    def execute(self, check_inputs):
        from .channel_graph import build
        from .channel_importance import importance
        from .channel_surgery import remove_channels, verify

        spec, graph, current = self.spec, self.graph, self.original
        scores, notes = importance(current, graph, spec.criterion, self.train, self.loss)
        self.notes += notes
        self.fraction = self._fraction(scores)
        plan = _schedule(spec, self.fraction)
        for k, (fraction, epochs) in enumerate(plan):
            if k:
                graph = build(current)
                scores, _ = importance(current, graph, spec.criterion, self.train, self.loss)
            removed = choose(graph, scores, fraction, spec, self.sizes)
            smaller = remove_channels(current, graph, removed)
            proof = verify(current, smaller, graph, removed, check_inputs)
            self._trace(graph, removed)
            macs = sum(build(smaller).macs().values())
            self.log(f"channel pruning step {k + 1}/{len(plan)}: removed {len(removed)} channel classes "
                     f"({fraction:.0%} of each group), {macs:,} MACs left; surgery proven "
                     f"(max abs error {proof['max_abs_error']:.2g})")
            if epochs:
                smaller = self._tune(smaller, epochs)
            self.steps.append({"fraction": round(fraction, 6), "removed_classes": len(removed), "macs": macs,
                               "fine_tune_epochs": epochs, "surgery_check": proof})
            current = smaller
        return current

    def _fraction(self, scores) -> float:
        """The fraction of channels to remove: the spec's, or the smallest that meets its MAC budget."""
        target = self.spec.target
        if isinstance(target, float):
            return target
        budget = target.macs * sum(self.graph.macs().values())

        def macs_at(f):
            return sum(self.graph.macs(choose(self.graph, scores, f, self.spec, self.sizes)).values())

        if macs_at(1.0) > budget:
            raise ChannelPruningError(
                f"a MAC budget of {target.macs:.0%} cannot be met: removing every prunable channel but "
                f"min_channels={self.spec.min_channels} leaves {macs_at(1.0) / (budget / target.macs):.0%} of the "
                "MACs (the rest is in layers whose channels must stay). Raise the budget or prune other layers")
        low, high = 0.0, 1.0
        for _ in range(_BISECTION_STEPS):
            mid = (low + high) / 2
            low, high = (low, mid) if macs_at(mid) <= budget else (mid, high)
        return high

    def _trace(self, graph, removed):
        for node in graph.producers():
            keep = graph.kept(node, removed)["out"]
            self.origin[node.path] = [self.origin[node.path][p] for p in keep]

    def _tune(self, model, epochs):
        if self.spec.distill:
            return self.fine_tune(model, self.train, epochs, teacher=self.original)
        return self.fine_tune(model, self.train, epochs)

    def record(self, smaller, seconds) -> dict:
        from .channel_records import describe_run

        return describe_run(self, smaller, seconds)


def choose(graph, scores, fraction, spec, sizes) -> set:
    """The channel classes to remove: in every prunable group, the least important, down to the kept count."""
    removed = set()
    for group in graph.groups():
        candidates = group.removable
        if not candidates or not _selected(group, spec.layers):
            continue
        keep = keep_count(sizes.get(group.key, len(candidates)), fraction, spec)
        extra = len(candidates) - keep
        if extra > 0:
            removed |= set(sorted(candidates, key=lambda r: scores.get(r, 0.0))[:extra])
    return removed


def keep_count(n: int, fraction: float, spec) -> int:
    """Channels a group of `n` keeps: n x (1 - fraction), to a multiple of round_to, at least min_channels."""
    step = spec.round_to
    keep = math.floor(n * (1.0 - fraction) / step + 0.5) * step  # halves round up, not to even
    keep = max(keep, step, spec.min_channels)
    return min(keep, n)


def _selected(group, patterns) -> bool:
    if not patterns:
        return True
    return all(any(fnmatch.fnmatchcase("/".join(p), pat) or fnmatch.fnmatchcase(p[-1], pat) for pat in patterns)
               for p in group.producers)


def _schedule(spec, fraction) -> list:
    """(fraction removed after the step, fine-tuning epochs after it) per step."""
    if spec.schedule == "one-shot":
        return [(fraction, spec.epochs)]
    base, extra = divmod(spec.epochs, spec.steps)
    return [(fraction * (k + 1) / spec.steps, base + (1 if k < extra else 0)) for k in range(spec.steps)]


def _loss_object(loss):
    from ..converter.keras_io import tf_keras

    return tf_keras().losses.get(loss) if isinstance(loss, str) else loss
