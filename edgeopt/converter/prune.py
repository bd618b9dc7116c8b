"""Pruning-aware fine-tuning with tensorflow-model-optimization, and measured sparsity.

Gotchas: tfmot prunes only Sequential/Functional tf_keras models; `strip_pruning` removes the
optimizer state, so the returned model is for export, not for resuming training.
"""

from __future__ import annotations

import collections.abc
import math

import numpy as np

from ..errors import ConversionError, DataError
from .keras_io import model_kind, tf_keras
from .progress import keras_progress

# Sparsity ramps up over the first part of fine-tuning and holds for the rest, so the network
# recovers accuracy at the final sparsity before training stops.
_RAMP_FRACTION = 0.6


def check_prunable(model):
    """Raise ConversionError (before any work) when tfmot cannot prune this model."""
    kind = model_kind(model)
    if kind == "Subclassed":
        raise ConversionError(
            f"pruning needs a Sequential or Functional model, but {model.name!r} is a subclassed model "
            f"({type(model).__name__}): tfmot must clone the model layer by layer, which it cannot do for "
            "code in a call() method. Either rebuild it as a Functional model, or drop `prune` from the "
            "recipe (all exports work without it)"
        )


def prune(model, train, spec, seed=0, progress=True):
    """Fine-tune `model` with magnitude pruning to `spec.target_sparsity`; return (stripped model, record).

    The input model is not modified (tfmot clones it). `train` is a Dataset with labels.
    """
    import tensorflow_model_optimization as tfmot

    keras = tf_keras()
    check_prunable(model)
    _require_labels(train)
    keras.utils.set_random_seed(seed)
    n = len(train)
    steps_per_epoch = math.ceil(n / spec.batch_size)
    total_steps = steps_per_epoch * spec.epochs
    sched_args = {"frequency": max(1, steps_per_epoch // 4)}
    if spec.schedule == "polynomial":
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=spec.target_sparsity, begin_step=0,
            end_step=max(1, int(total_steps * _RAMP_FRACTION)), **sched_args,
        )
    else:
        schedule = tfmot.sparsity.keras.ConstantSparsity(spec.target_sparsity, begin_step=0, **sched_args)
    kwargs = {"pruning_schedule": schedule}
    if spec.m_by_n:
        m, nn = map(int, spec.m_by_n.split(":"))
        kwargs["sparsity_m_by_n"] = (m, nn)
    try:
        pruned = tfmot.sparsity.keras.prune_low_magnitude(model, **kwargs)
    except ValueError as e:
        raise ConversionError(f"tfmot cannot prune {model.name!r}: {e}") from None
    # tfmot wraps every layer; only those with prunable weights (kernels) are really pruned.
    wrapped = [l.layer.name for l in pruned.layers if type(l).__name__ == "PruneLowMagnitude" and l.pruning_vars]
    if not wrapped:
        raise ConversionError(f"model {model.name!r} has no layer tfmot can prune (Dense, Conv, ...)")

    loss, loss_name = resolve_loss(model, train, spec.loss)
    lr = keras.optimizers.schedules.CosineDecay(spec.learning_rate, decay_steps=max(1, total_steps))
    pruned.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    pruned.fit(
        train.x if len(train.x) > 1 else train.x[0], train.y, batch_size=spec.batch_size, epochs=spec.epochs,
        verbose=0, shuffle=True,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), keras_progress("pruning fine-tune", progress)],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    record = {
        "target_sparsity": spec.target_sparsity,
        "schedule": spec.schedule,
        "m_by_n": spec.m_by_n,
        "epochs": spec.epochs,
        "steps": total_steps,
        "batch_size": spec.batch_size,
        "learning_rate": {"peak": spec.learning_rate, "schedule": "cosine decay", "optimizer": "Adam"},
        "loss": loss_name,
        "train_samples": n,
        "train_source": train.source,
    }
    return stripped, record, wrapped


def effective_target(spec) -> float:
    """M:N sparsity fixes the fraction itself: 2:4 keeps 2 of every 4 weights, whatever target_sparsity says."""
    if spec.m_by_n:
        m, n = map(int, spec.m_by_n.split(":"))
        return (n - m) / n
    return spec.target_sparsity


def measure_sparsity(model, pruned_layers, m_by_n=None) -> dict:
    """Fraction of exactly-zero kernel weights, per pruned layer and overall (measured, not assumed).

    With `m_by_n` ('2:4'), also the fraction of groups of N input-channel weights that keep at most M.
    """
    layers, zeros, total = {}, 0, 0
    all_zeros, all_total = 0, 0
    for layer in model.layers:
        for w in layer.weights:
            v = w.numpy()
            all_zeros += int(np.count_nonzero(v == 0))
            all_total += v.size
        if layer.name in pruned_layers:
            kernel = layer.weights[0].numpy()  # tfmot prunes the kernel (first weight) of each layer
            z = int(np.count_nonzero(kernel == 0))
            layers[layer.name] = {"weights": int(kernel.size), "sparsity": round(z / kernel.size, 6)}
            if m_by_n:
                layers[layer.name]["m_by_n_compliance"] = _m_by_n_compliance(kernel, m_by_n)
            zeros += z
            total += kernel.size
    return {
        "model": round(zeros / total, 6) if total else 0.0,
        "all_weights": round(all_zeros / all_total, 6) if all_total else 0.0,
        "layers": layers,
    }


def _m_by_n_compliance(kernel, m_by_n):
    """Share of N-groups along the input-channel axis (second to last) with at most M non-zeros."""
    m, n = map(int, m_by_n.split(":"))
    grouped = np.moveaxis(kernel, -2, -1)
    if grouped.shape[-1] % n:
        return None  # tfmot leaves layers whose input channels are not a multiple of N dense
    groups = grouped.reshape(-1, n)
    return round(float(np.mean(np.count_nonzero(groups, axis=1) <= m)), 6)


def prepare_training_labels(model, train, spec):
    """Training data whose labels fit the loss pruning will use, checked before any work; (Dataset, conversion made).

    Class indices become one-hot (and back) where the loss needs it and only one reading is possible;
    anything else is refused with what the loss expects and what the labels hold (converter.labels).
    """
    from ..data import Dataset
    from . import labels
    from .keras_io import output_specs

    _require_labels(train)
    outputs = output_specs(model)
    if len(outputs) != 1:  # a multi-output model needs an explicit loss per output (see resolve_loss)
        return train, None
    loss = getattr(model, "loss", None) if spec.loss == "auto" else spec.loss
    y, converted = labels.fit_labels(train.y, outputs[0]["shape"], loss_name(loss), train.source)
    return Dataset(train.x, y, train.source), converted


def _require_labels(train):
    if train is None or train.y is None:
        raise DataError(
            "pruning fine-tunes the model, so it needs training data with labels: give data.train "
            "(an .npz with x and y, a module:function, or 'digits') or drop `prune` from the recipe"
        )


def loss_name(loss) -> str | None:
    """Keras' canonical name of a loss given as a string, a function or a Loss object ('mse' -> 'mean_squared_error').

    None for no loss or one loss per output (a dict or list). A custom loss keeps its own name.
    """
    if loss is None or isinstance(loss, (collections.abc.Mapping, list, tuple)):
        return None
    if isinstance(loss, str):
        try:
            loss = tf_keras().losses.get(loss)
        except ValueError:
            return loss
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    return config.get("fn") or getattr(loss, "__name__", None) or getattr(loss, "name", None) or type(loss).__name__


def _described(loss) -> str:
    """The loss as the manifest records it: its name, and from_logits when the Loss object sets it."""
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    name = loss_name(loss) or type(loss).__name__
    return f"{name}(from_logits={config['from_logits']})" if "from_logits" in config else name


def resolve_loss(model, train, name):
    """The loss to fine-tune with: the user's choice, the model's compiled loss, or one inferred from the data."""
    keras = tf_keras()
    if name != "auto":
        loss = keras.losses.get(name)
        return loss, _described(loss)
    compiled = getattr(model, "loss", None)
    if compiled is not None:
        return compiled, _described(compiled)
    sample = model.predict(train.x[0][:64] if len(train.x) == 1 else [a[:64] for a in train.x], verbose=0)
    if isinstance(sample, list):
        raise DataError("pruning a multi-output model needs an explicit loss: set prune.loss in the recipe")
    y = np.asarray(train.y)
    probabilities = bool(np.all(sample >= 0) and np.allclose(sample.sum(axis=-1), 1.0, atol=1e-3))
    if sample.shape[-1] > 1 and y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities), (
            f"sparse_categorical_crossentropy(from_logits={not probabilities})"
        )
    if sample.shape[-1] > 1 and y.shape[1:] == sample.shape[1:]:
        return keras.losses.CategoricalCrossentropy(from_logits=not probabilities), (
            f"categorical_crossentropy(from_logits={not probabilities})"
        )
    if sample.shape[-1] == 1 and set(np.unique(y)) <= {0, 1}:
        sigmoid = bool(np.all((sample >= 0) & (sample <= 1)))
        return keras.losses.BinaryCrossentropy(from_logits=not sigmoid), f"binary_crossentropy(from_logits={not sigmoid})"
    return keras.losses.MeanSquaredError(), "mean_squared_error"
