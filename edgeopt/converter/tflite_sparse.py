"""Sparse-encoded TFLite files for pruned models, kept only when they are smaller.

TFLiteConverter's sparsity optimization (tf.lite.Optimize.EXPERIMENTAL_SPARSITY) stores the
non-zero weights of sparse tensors with their indices, and adds DENSIFY ops that expand them when
the model is prepared. Whether that pays depends on the precision: at 50% sparsity an fp32 file
shrinks (four bytes saved per zero outweigh the indices), while an int8 file grows (one byte saved
per zero does not). So both encodings are made and the smaller one is kept; the artifact's facts
say which, and both sizes.

Gotchas: the runtimes densify the weights when the model loads, so a sparse-encoded file is
smaller to ship, not faster to run (benchmarks/channels measures it).
"""

from __future__ import annotations

from . import tflite
from ..errors import ConversionError


def convert_smallest(serving, precision: str, options: dict, calibration=None) -> tuple[bytes, dict]:
    """(the smaller of the dense- and sparse-encoded files, facts naming the encoding and both sizes)."""
    dense = tflite.convert(serving, precision, options, calibration)
    try:
        sparse = tflite.convert(serving, precision, options, calibration, sparse=True)
    except ConversionError as e:  # the dense file stands; say why there is no sparse one
        return dense, {"sparse_encoding": {"used": False, "dense_bytes": len(dense), "error": str(e)}}
    used = len(sparse) < len(dense)
    facts = {"sparse_encoding": {"used": used, "dense_bytes": len(dense), "sparse_bytes": len(sparse)}}
    return (sparse if used else dense), facts
