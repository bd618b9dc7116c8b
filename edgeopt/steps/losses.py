"""The task loss a step fine-tunes with: the user's choice, the model's compiled loss, or one inferred from the data."""

from __future__ import annotations

import numpy as np

from ..converter.keras_io import tf_keras
from ..errors import DataError


def resolve_loss(model, train, name):
    """(tf_keras loss, its name for the manifest)."""
    keras = tf_keras()
    if name != "auto":
        return keras.losses.get(name), name
    compiled = getattr(model, "loss", None)
    if compiled is not None:
        return compiled, getattr(compiled, "name", None) or getattr(compiled, "__name__", None) or str(compiled)
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
