"""The task loss a step fine-tunes with (the user's choice, the model's compiled loss, or one inferred from the data),
and training labels fitted to it before any work."""

from __future__ import annotations

import collections.abc

import numpy as np

from ..converter.keras_io import tf_keras
from ..errors import DataError


def fit_training_labels(model, train, planned):
    """(training data whose labels fit the loss of the first step that trains on labels, the conversion made).

    Class indices become one-hot (and back) where the loss needs it and only one reading is possible; anything
    else is refused with what the loss expects and what the labels hold (converter.labels).
    """
    from ..converter import labels
    from ..converter.keras_io import output_specs
    from ..data import Dataset

    labelled = [p for p in planned if p.step.trains and p.teacher is None]
    outputs = output_specs(model)
    if not labelled or train is None or train.y is None or len(outputs) != 1:  # multi-output: a loss per output
        return train, None
    name = getattr(labelled[0].spec, "loss", "auto")
    loss = getattr(model, "loss", None) if name == "auto" else name
    y, converted = labels.fit_labels(train.y, outputs[0]["shape"], loss_name(loss), train.source)
    return Dataset(train.x, y, train.source), converted


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
    """(tf_keras loss, its name for the manifest)."""
    keras = tf_keras()
    if name != "auto":
        loss = keras.losses.get(name)
        return loss, _described(loss)
    compiled = getattr(model, "loss", None)
    if compiled is not None:
        return compiled, _described(compiled)
    sample = model.predict(train.x[0][:64] if len(train.x) == 1 else [a[:64] for a in train.x], verbose=0)
    if isinstance(sample, list):
        raise DataError("fine-tuning a multi-output model needs an explicit loss: set the step's loss in the recipe")
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
