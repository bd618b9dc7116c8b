"""The fine-tuning recipe every training step shares: optimizer, schedule, clipping, decay, early stopping,
BatchNorm handling, mixed precision, seed, progress.

`FineTuneSpec` declares the options once (each training step's spec extends it, so they sit flat beside
the step's own options in a recipe); `FineTuner` is the `fine_tune(model, train, epochs)` callable a step
receives. TensorFlow is imported only when a model is trained.

Example:
    >>> spec = FineTuneSpec(optimizer="sgd", lr_schedule="step", step_epochs=2, clip_norm=1.0)
    >>> spec.problems()
    []

Gotchas: `batchnorm: freeze` runs BatchNormalization in inference mode (its statistics stay as they
are); `mixed_precision` trains in bfloat16 on CPUs that have it and is often *slower* for small models
(see benchmarks/optimize_steps.py); early stopping restores the best epoch's weights.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import DataError

TEACHER_CHOICES = ("auto", "none", "source")  # or a path to a Keras model file


class FineTuneSpec(BaseModel):
    """Options of the fine-tuning every training step runs (shared; declared once)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(4, ge=1, le=1000, description="passes over the training data")
    batch_size: int = Field(32, ge=1, le=65536, description="samples per gradient step")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="adam, adamw (decoupled weight "
                                                       "decay) or sgd (with momentum)")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="peak learning rate (reached after any warm-up)")
    lr_schedule: Literal["cosine", "constant", "step"] = Field(
        "cosine", description="cosine decay to 0, constant, or step (times step_factor every step_epochs)")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up from 0 to learning_rate, in epochs")
    step_epochs: int = Field(2, ge=1, description="lr_schedule step: epochs between drops")
    step_factor: float = Field(0.1, gt=0, lt=1, description="lr_schedule step: factor at each drop")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    weight_decay: float | None = Field(None, ge=0, description="decoupled weight decay (default: 0.004 with "
                                       "adamw, none otherwise)")
    l2: float = Field(0.0, ge=0, description="L2 penalty on every kernel, added to the loss")
    clip_norm: float | None = Field(None, gt=0, description="clip each gradient to this L2 norm")
    validation_split: float = Field(0.0, ge=0, le=0.5, description="share of the training data held out "
                                    "(seeded) to watch the validation loss")
    patience: int | None = Field(None, ge=1, description="early stopping: epochs without a better validation "
                                 "loss (needs validation_split); the best epoch's weights are kept")
    batchnorm: Literal["train", "freeze"] = Field("train", description="freeze: BatchNorm statistics stay "
                                                  "fixed (inference mode) while training")
    mixed_precision: bool = Field(False, description="train in bfloat16 where the CPU supports it "
                                  "(avx512_bf16 / amx_bf16 / ARM bf16); weights stay float32")
    loss: str = Field("auto", description="task loss: a Keras loss name, or auto (the model's compiled loss, "
                      "else inferred from the labels)")
    teacher: str = Field("auto", description="distil from: none (labels only), source (the input model), a "
                         "Keras model file, or auto (the teacher of an earlier distill step, else none)")
    alpha: float | None = Field(None, ge=0, le=1, description="weight of the task loss when distilling; the "
                                "rest goes to the teacher (default: 0.1 with labels, 0 without)")
    temperature: float = Field(4.0, gt=0, le=100, description="distillation temperature T")

    def problems(self) -> list[str]:
        """Combinations pydantic cannot see: options that do nothing or contradict each other."""
        found = []
        # Options away from their defaults (a recorded recipe lists every option, so "set" is not enough).
        given = {k for k, f in type(self).model_fields.items() if getattr(self, k) != f.default}
        if self.patience and not self.validation_split:
            found.append("patience needs a validation_split (e.g. 0.1) to watch the validation loss")
        if self.warmup_epochs >= self.epochs:
            found.append(f"warmup_epochs ({self.warmup_epochs:g}) must be shorter than epochs ({self.epochs})")
        for option in ("step_epochs", "step_factor"):
            if option in given and self.lr_schedule != "step":
                found.append(f"{option} applies to lr_schedule: step only (lr_schedule is {self.lr_schedule})")
        if "momentum" in given and self.optimizer != "sgd":
            found.append(f"momentum applies to optimizer: sgd only (optimizer is {self.optimizer})")
        if self.mixed_precision and not cpu_has_bfloat16():
            found.append("mixed_precision: this CPU has no bfloat16 instructions (avx512_bf16, amx_bf16 or ARM "
                         "bf16), so bfloat16 would be emulated and slow; set mixed_precision: false")
        if ("alpha" in given or "temperature" in given) and self.teacher == "none":
            found.append("alpha and temperature weigh a distillation loss, but teacher is none")
        return found


def cpu_has_bfloat16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def fine_tune_options(spec) -> FineTuneSpec:
    """The fine-tuning options of any step spec (fields a spec does not declare keep their defaults)."""
    shared = FineTuneSpec.model_fields
    values = {k: v for k, v in spec.model_dump().items() if k in shared}
    if values.get("epochs") == 0:  # a step that may skip fine-tuning (channels: epochs 0) never calls it
        del values["epochs"]
    return FineTuneSpec(**values)


class FineTuner:
    """`fine_tune(model, train, epochs=None, *, callbacks=(), settle_epochs=0) -> record` for one step.

    Trains `model` in place on `train` (a data.Dataset) towards the objective `objective_for(model, train)`
    builds (objective.py: labels, a teacher's outputs, or both) with the step's fine-tuning options.
    `settle_epochs`: early stopping never stops (or restores) before this epoch, e.g. while a pruning
    schedule still ramps up.
    """

    def __init__(self, spec: FineTuneSpec, objective_for, *, seed=0, progress=True, log=print, name="fine-tune"):
        self.spec, self.objective_for = spec, objective_for
        self.seed, self.progress, self.log, self.name = seed, progress, log, name
        self.records = []  # one per call, for the step's manifest record

    def steps_per_epoch(self, train) -> int:
        fit, _ = _split(len(train), self.spec.validation_split, self.seed)
        return max(1, math.ceil(len(fit) / self.spec.batch_size))

    def __call__(self, model, train, epochs=None, *, callbacks=(), settle_epochs=0) -> dict:
        from .keras_training import compile_for, fit, frozen_batchnorm

        spec, epochs = self.spec, epochs or self.spec.epochs
        fit_idx, val_idx = _split(len(train), spec.validation_split, self.seed)
        objective = self.objective_for(model, train)
        targets = objective.targets(train)
        if targets is None:
            raise DataError(f"{self.name}: the training data has no labels and no teacher supplies targets")
        steps = max(1, math.ceil(len(fit_idx) / spec.batch_size))
        t0 = time.time()
        with frozen_batchnorm(model, spec.batchnorm == "freeze"):
            compile_for(model, spec, objective, steps, epochs, self.seed)  # after freezing: compile reads trainable
            history = fit(model, train, targets, fit_idx, val_idx, spec, epochs, list(callbacks), settle_epochs,
                          progress=self.progress, log=self.log, name=self.name)
        record = _record(spec, objective, epochs, steps, len(fit_idx), len(val_idx), history, time.time() - t0)
        self.records.append(record)
        return record


def _split(n, share, seed):
    """Seeded (fit, validation) indices; no validation when share is 0."""
    order = np.random.default_rng(seed).permutation(n)
    held = int(round(n * share))
    return np.sort(order[held:]), np.sort(order[:held])


def _record(spec, objective, epochs, steps, n_fit, n_val, history, seconds) -> dict:
    per_epoch = [{k: round(float(v), 6) for k, v in row.items()} for row in history["epochs"]]
    return {
        "objective": objective.describe(),
        "optimizer": spec.optimizer,
        "learning_rate": {"peak": spec.learning_rate, "schedule": spec.lr_schedule, "warmup_epochs": spec.warmup_epochs},
        "epochs_planned": epochs,
        "epochs_run": len(per_epoch),
        "best_epoch": history.get("best_epoch"),
        "steps_per_epoch": steps,
        "fit_samples": n_fit,
        "validation_samples": n_val,
        "mixed_precision": history.get("mixed_precision", False),
        "batchnorm": spec.batchnorm,
        "history": per_epoch,
        "seconds": round(seconds, 2),
    }
