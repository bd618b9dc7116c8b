"""ONNX fp32 export with tf2onnx (tracing lives in serving.py)."""

from __future__ import annotations

import logging

from ..errors import ConversionError
from .keras_io import tf_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


def export(serving, opset: int) -> bytes:
    """ONNX fp32 of `serving` (a serving.Serving), dynamic batch."""
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    try:
        proto = serving.onnx(opset)
    except Exception as e:  # tf2onnx raises plain Exceptions/ValueErrors for unsupported ops
        msg = str(e).strip().splitlines()
        raise ConversionError(f"tf2onnx could not export to ONNX opset {opset}: {msg[0][:400] if msg else e}") from None
    return proto.SerializeToString()
