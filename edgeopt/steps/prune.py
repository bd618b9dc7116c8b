"""Magnitude pruning with tensorflow-model-optimization: element-wise, M:N, or in blocks; per-layer targets;
layers chosen by name or class.

Gotchas: tfmot prunes only Sequential/Functional tf_keras models, and blocks only 2-D kernels (Dense), so
with `block_size` other selected layers are pruned element by element (the record says which);
`strip_pruning` drops the optimizer state, so the returned model is for export, not for resuming training.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from ..errors import ConversionError
from .selection import LayerSelection, selected, unknown
from .training import FineTuneSpec

# Sparsity ramps up over the first part of fine-tuning and holds for the rest, so the network
# recovers accuracy at the final sparsity before training stops.
RAMP_FRACTION = 0.6


class PruneSpec(FineTuneSpec, LayerSelection):
    target_sparsity: float = Field(0.5, gt=0.0, lt=1.0, description="share of kernel weights set to zero")
    schedule: Literal["polynomial", "constant"] = Field(
        "polynomial", description="polynomial: sparsity ramps up over the first 60% of steps; constant: from the start")
    m_by_n: str | None = Field(None, pattern=r"^\d+:\d+$", description="structured sparsity, e.g. '2:4' (at most "
                               "M non-zeros in every N input weights)")
    block_size: tuple[int, int] = Field((1, 1), description="prune whole blocks (rows, columns) of Dense kernels, "
                                        "e.g. [1, 4]")
    block_pooling: Literal["avg", "max"] = Field("avg", description="how a block's magnitude is taken")
    layer_targets: dict[str, float] = Field(default_factory=dict, description="per-layer target_sparsity, by "
                                            "layer name or class, e.g. {logits: 0.3}")

    @field_validator("m_by_n")
    @classmethod
    def _m_below_n(cls, value):
        # A validator, not problems(): reported with the other fields' errors when one of them is also wrong.
        if value is not None and not 0 < int(value.split(":")[0]) < int(value.split(":")[1]):
            raise ValueError(f"{value!r} must be M:N with 0 < M < N, e.g. '2:4'")
        return value

    def problems(self) -> list[str]:
        found = super().problems()
        if self.m_by_n:
            if tuple(self.block_size) != (1, 1):
                found.append("m_by_n and block_size are exclusive: choose one sparsity pattern")
            if self.layer_targets:
                found.append("m_by_n fixes each layer's sparsity ((N-M)/N): layer_targets cannot apply with it")
        if any(b < 1 for b in self.block_size):
            found.append(f"block_size {list(self.block_size)} must hold two sizes of at least 1")
        bad = {k: v for k, v in self.layer_targets.items() if not 0 < v < 1}
        if bad:
            found.append(f"layer_targets {bad} must lie strictly between 0 and 1")
        return found


def check_prunable(model):
    """Raise ConversionError when tfmot cannot prune this model."""
    problem = unprunable(model)
    if problem:
        raise ConversionError(problem)


def unprunable(model) -> str | None:
    from ..converter.keras_io import model_kind

    if model_kind(model) == "Subclassed":
        return (
            f"pruning needs a Sequential or Functional model, but {model.name!r} is a subclassed model "
            f"({type(model).__name__}): tfmot must clone the model layer by layer, which it cannot do for "
            "code in a call() method. Either rebuild it as a Functional model, or drop `prune` from the "
            "recipe (all exports work without it)"
        )
    return None


def model_problems(model, spec, where) -> list[str]:
    problem = unprunable(model)
    if problem:
        return [f"{where}: {problem}"]
    return unknown(model, [*(spec.layers or []), *spec.exclude, *spec.layer_targets], where)


def effective_target(spec) -> float:
    """M:N sparsity fixes the fraction itself: 2:4 keeps 2 of every 4 weights, whatever target_sparsity says."""
    if spec.m_by_n:
        m, n = map(int, spec.m_by_n.split(":"))
        return (n - m) / n
    return spec.target_sparsity


def tag(spec) -> str:
    if spec.m_by_n:
        return "pruned-" + spec.m_by_n.replace(":", "of")
    return f"pruned{round(spec.target_sparsity * 100)}"


def prune(model, spec, train, *, seed=0, progress=True, log=print, fine_tune):
    """Fine-tune `model` with magnitude pruning; return (stripped tf_keras model, record for the manifest)."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    from ..converter.keras_io import tf_keras

    check_prunable(model)
    steps_per_epoch = fine_tune.steps_per_epoch(train)
    total = steps_per_epoch * spec.epochs
    ramp_end = max(1, int(total * RAMP_FRACTION))
    plan = {}

    def wrap(layer):
        if not selected(layer, spec) or not prune_registry.PruneRegistry.supports(layer):
            return layer
        target = _layer_target(layer, spec)
        kernel = getattr(layer, "kernel", None)
        block = tuple(spec.block_size) if kernel is not None and len(kernel.shape) == 2 else (1, 1)
        plan[layer.name] = {"target": target, "block_size": list(block)}
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=_schedule(tfmot, spec, target, ramp_end, steps_per_epoch),
            block_size=block, block_pooling_type=spec.block_pooling.upper(),
            **({"sparsity_m_by_n": tuple(map(int, spec.m_by_n.split(":")))} if spec.m_by_n else {}))

    try:
        wrapped = tf_keras().models.clone_model(model, clone_function=wrap)
    except ValueError as e:
        raise ConversionError(f"tfmot cannot prune {model.name!r}: {e}") from None
    # tfmot wraps layers it has nothing to prune in (pooling, BatchNormalization, DepthwiseConv2D) too.
    pruned = {layer.layer.name for layer in wrapped.layers if getattr(layer, "pruning_vars", None)}
    plan = {name: layer for name, layer in plan.items() if name in pruned}
    if not plan:
        raise ConversionError(f"model {model.name!r} has no selected layer tfmot can prune (Dense, Conv, ...)")
    log(f"pruning to {effective_target(spec):.0%} sparsity: {len(plan)} layer(s), {spec.schedule} schedule, "
        f"{spec.epochs} epochs")
    ramp_epochs = math.ceil(ramp_end / steps_per_epoch) if spec.schedule == "polynomial" else 0
    fine_tune(wrapped, train, spec.epochs, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
              settle_epochs=ramp_epochs)
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    return stripped, {"layers": plan, "steps": total, "ramp_steps": ramp_end if spec.schedule == "polynomial" else 0,
                      "target": effective_target(spec)}


def _layer_target(layer, spec) -> float:
    for key in (layer.name, type(layer).__name__):
        if key in spec.layer_targets:
            return spec.layer_targets[key]
    return spec.target_sparsity


def _schedule(tfmot, spec, target, ramp_end, steps_per_epoch):
    frequency = max(1, steps_per_epoch // 4)
    if spec.schedule == "polynomial":
        return tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target, begin_step=0,
                                                    end_step=ramp_end, frequency=frequency)
    return tfmot.sparsity.keras.ConstantSparsity(target, begin_step=0, frequency=frequency)


def verify(spec, record, measured) -> tuple[list, dict]:
    """The sparsity reached (measured) against the target; M:N and block patterns kept in every layer."""
    sparsity = measured["sparsity"]
    problems = []
    # Rounding in per-layer pruning masks lands a hair under the target; 2% of the target is noise.
    for name, layer in sparsity["layers"].items():
        want = record["layers"].get(name, {}).get("target")
        reached = layer.get("block_sparsity", layer["sparsity"])  # blocks: tfmot's target counts whole blocks
        if want is not None and not spec.m_by_n and reached < want * 0.98:
            problems.append(f"layer {name}: measured sparsity {reached:.3f} is below its target {want}")
    target = effective_target(spec)
    if not spec.layer_targets and sparsity["model"] < target * 0.98:
        problems.append(f"measured sparsity {sparsity['model']:.3f} is below the target {target}")
    for pattern in ("m_by_n_compliance", "block_compliance"):
        broken = [n for n, layer in sparsity["layers"].items() if layer.get(pattern, 1) not in (1, None)]
        if broken:
            problems.append(f"layers {', '.join(broken)} do not keep the {pattern.split('_compliance')[0]} pattern "
                            "in every group")
    return problems, {"min_sparsity": round(target * 0.98, 4)}
