"""scikit-learn's 8x8 digits (bundled, offline) in the input shape each reference model takes."""

import numpy as np

from edgeopt import data

SHAPES = {"image": (8, 8, 1), "flat": (64,), "rows": (8, 8)}
UPSCALED = {"rgb224": 224}  # an ImageNet-sized network's input: each pixel a 28x28 block, grey as RGB, in [-1, 1]


def digits_as(layout: str, role: str) -> data.Dataset:
    """The digits split for `role` ('train', 'calibration', 'evaluation') as images, flat pixels, rows or
    224x224 RGB images ('rgb224': 600 KB a sample, 0.75 GB for the training split).

    Example:
        >>> digits_as("rows", "evaluation").x[0].shape  # doctest: +SKIP
        (540, 8, 8)
    """
    ds = data.digits(role)
    if layout in UPSCALED:
        return data.Dataset([_upscaled(ds.x[0], UPSCALED[layout])], ds.y, f"{ds.source}:{layout}")
    x = ds.x[0].reshape((len(ds),) + SHAPES[layout])
    return data.Dataset([x], ds.y, f"{ds.source}:{layout}")


def _upscaled(x, size):
    """(N, 8, 8, 1) in [0, 1] -> (N, size, size, 3) in [-1, 1], each pixel repeated into a block."""
    block = size // x.shape[1]
    x = np.repeat(np.repeat(x[..., 0], block, axis=1), block, axis=2)
    return np.repeat(x[..., None] * 2.0 - 1.0, 3, axis=-1).astype(np.float32)
