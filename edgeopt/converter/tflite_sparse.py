"""Sparse-encoded TFLite files for pruned models, kept only when they are smaller and still run.

TFLiteConverter's sparsity optimization (tf.lite.Optimize.EXPERIMENTAL_SPARSITY) stores the
non-zero weights of sparse tensors with their indices, and adds DENSIFY ops that expand them when
the model is prepared. Whether that pays depends on precision and sparsity: at 50% sparsity an fp32
file shrinks (four bytes saved per zero outweigh the indices) while an int8 file grows (one byte
saved per zero does not). And LiteRT 2.3's default XNNPACK delegate refuses sparse int8 and
int8-dynamic files ("failed to delegate CONV_2D ... failed to prepare") even where they are smaller.
So both encodings are made, and the sparse one is kept only when it is smaller and LiteRT, as users
run it (default delegates), loads and runs it; the artifact's facts say which, both sizes, and why.

Gotchas: the runtimes densify the weights when the model loads, so a sparse-encoded file is smaller
to ship, not faster to run (benchmarks/results/channels measures it).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConversionError
from . import tflite

# Below this share of exact zeros in every weight matrix, a sparse encoding cannot be smaller: not tried.
_MIN_ZEROS = 0.25


def worth_trying(model) -> bool:
    """True when some weight matrix of `model` is at least 25% exact zeros (a pruned model, whoever pruned it)."""
    for w in model.weights:
        if len(w.shape) >= 2:
            v = np.asarray(w)
            if v.size and np.count_nonzero(v == 0) >= _MIN_ZEROS * v.size:
                return True
    return False


def convert_smallest(serving, precision: str, options: dict, calibration=None) -> tuple[bytes, dict]:
    """(the file to keep, {"sparse_encoding": {used, dense_bytes, sparse_bytes, why}})."""
    dense = tflite.convert(serving, precision, options, calibration)
    facts = {"used": False, "dense_bytes": len(dense)}
    try:
        sparse = tflite.convert(serving, precision, options, calibration, sparse=True)
    except ConversionError as e:  # the dense file stands; say why there is no sparse one
        return dense, {"sparse_encoding": {**facts, "why": f"the sparse conversion failed: {e}"}}
    facts["sparse_bytes"] = len(sparse)
    if len(sparse) >= len(dense):
        facts["why"] = "the sparse encoding is not smaller"
        return dense, {"sparse_encoding": facts}
    problem = _cannot_run(sparse)
    if problem:
        facts["why"] = f"the sparse-encoded file is smaller but LiteRT cannot run it: {problem}"
        return dense, {"sparse_encoding": facts}
    return sparse, {"sparse_encoding": {**facts, "used": True, "why": "the sparse encoding is smaller"}}


def _cannot_run(model_bytes) -> str | None:
    """None when LiteRT (default delegates, as users run it) loads the file and runs it on zeros."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=model_bytes)
        interpreter.allocate_tensors()
        for d in interpreter.get_input_details():
            interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interpreter.invoke()
    except Exception as e:  # XNNPACK's "failed to prepare" and friends: the dense file is kept
        return " ".join(str(e).split())[:300]
    return None
