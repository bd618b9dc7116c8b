"""Training labels checked against the model's output and loss before any fine-tuning starts.

TensorFlow-free (numpy only). Keras reports a label/loss mismatch deep inside `fit` as
"Shapes (32, 1) and (32, 10) are incompatible"; here it is caught up front, converted where only one
reading is possible (class indices <-> one-hot), and otherwise refused naming what the loss expects
and what the data holds.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

# What each Keras loss expects of its labels, by the canonical function name Keras gives it.
SPARSE = {"sparse_categorical_crossentropy", "sparse_categorical_focal_crossentropy"}
ONE_HOT = {"categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge",
           "kl_divergence", "kullback_leibler_divergence"}
SAME_SHAPE = {"binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge", "mean_squared_error",
              "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_logarithmic_error", "huber",
              "huber_loss", "log_cosh", "logcosh", "poisson", "cosine_similarity"}


def fit_labels(y, output_shape, loss: str | None, source: str) -> tuple[np.ndarray, str | None]:
    """Labels in the form `loss` needs for an output of `output_shape` ([None, ...]); (labels, conversion made).

    `loss`: the canonical name of the loss fine-tuning will use, or None when it will be inferred from
    the labels (then only labels that fit no reading are refused). Unknown (custom) losses are not checked.
    Raise DataError saying what the loss expects and what `y` holds.
    """
    y = np.asarray(y)
    out = _Output(list(output_shape[1:]))
    if loss in SPARSE or (loss is None and out.classes > 1 and out.takes_indices(y)):
        return _as_indices(y, out, loss, source)
    if loss in ONE_HOT or (loss is None and out.classes > 1):
        return _as_one_hot(y, out, loss, source)
    if loss in SAME_SHAPE or loss is None:
        if not out.fits(y.shape[1:]) and not (out.per_sample == [1] and y.ndim == 1):  # Keras broadcasts (N,)
            raise _mismatch(loss, f"targets of the output's shape {out.described}", y, source)
    return y, None


class _Output:
    """The per-sample shape of the model's output: classes on the last axis, any axes before it."""

    def __init__(self, per_sample):
        self.per_sample = per_sample
        self.classes = per_sample[-1] if per_sample and per_sample[-1] else 1
        self.described = f"(samples, {', '.join('?' if d is None else str(d) for d in per_sample)})"

    def fits(self, shape) -> bool:
        return len(shape) == len(self.per_sample) and all(w is None or w == g for w, g in zip(self.per_sample, shape))

    def index_shape(self, shape) -> bool:
        """Shape of class indices for this output: its shape without the class axis (optionally a trailing 1)."""
        lead = self.per_sample[:-1]
        return _Output(lead).fits(shape) or _Output(lead + [1]).fits(shape)

    def takes_indices(self, y) -> bool:
        return self.index_shape(y.shape[1:]) and _integral(y)


def _integral(y) -> bool:
    return y.dtype.kind in "iub" or (y.dtype.kind == "f" and bool(np.all(np.mod(y, 1) == 0)))


def _as_indices(y, out, loss, source):
    if out.fits(y.shape[1:]) and _is_one_hot(y):
        return y.argmax(axis=-1).astype(np.int64), f"one-hot labels -> class indices for {loss}"
    if not out.takes_indices(y):
        raise _mismatch(loss, f"class indices (integers 0..{out.classes - 1}) of shape (samples"
                        f"{''.join(f', {d}' for d in out.per_sample[:-1])})", y, source)
    _check_range(y, out.classes, loss, source)
    return y.astype(np.int64), None


def _as_one_hot(y, out, loss, source):
    if out.fits(y.shape[1:]):
        return y, None
    if out.takes_indices(y):
        _check_range(y, out.classes, loss, source)
        indices = y.astype(np.int64).reshape((len(y), *[d for d in out.per_sample[:-1]]))
        one_hot = np.eye(out.classes, dtype=np.float32)[indices]
        return one_hot, f"class indices -> one-hot labels ({out.classes} classes) for {loss or 'the loss'}"
    raise _mismatch(loss, f"one-hot labels of shape {out.described}, or class indices 0..{out.classes - 1}",
                    y, source)


def _is_one_hot(y) -> bool:
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=-1) == 1))


def _check_range(y, classes, loss, source):
    if y.min() < 0 or y.max() >= classes:
        raise DataError(
            f"training labels from {source} go from {_num(y.min())} to {_num(y.max())}, but the model's output has "
            f"{classes} classes ({loss or 'class indices'} needs 0..{classes - 1}): these labels belong to another "
            "model or task; pass the training data that goes with this model"
        )


def _mismatch(loss, expected, y, source) -> DataError:
    held = f"an array of shape {y.shape} ({y.dtype})"
    if y.size and _integral(y):
        held += f" with values from {_num(y.min())} to {_num(y.max())}"
    return DataError(
        f"training labels from {source} do not fit the loss: {loss or 'the model'} expects {expected}; the data "
        f"holds {held}. Pass labels in that form, or set prune.loss in the recipe to the loss that matches them"
    )


def _num(v):
    return int(v) if float(v).is_integer() else float(v)
