"""scikit-learn's 8x8 digits (bundled, offline) in the input shape each reference model takes."""

from edgeopt import data

SHAPES = {"image": (8, 8, 1), "flat": (64,), "rows": (8, 8)}


def digits_as(layout: str, role: str) -> data.Dataset:
    """The digits split for `role` ('train', 'calibration', 'evaluation') as images, flat pixels or rows.

    Example:
        >>> digits_as("rows", "evaluation").x[0].shape  # doctest: +SKIP
        (540, 8, 8)
    """
    ds = data.digits(role)
    x = ds.x[0].reshape((len(ds),) + SHAPES[layout])
    return data.Dataset([x], ds.y, f"{ds.source}:{layout}")
