"""ONNX fp32 export with tf2onnx, from the Keras model's own input signature."""

from __future__ import annotations

import logging

from ..errors import ConversionError
from .keras_io import input_specs, tf_keras  # noqa: F401  (tf_keras import order: legacy Keras first)


def export(model, opset: int) -> bytes:
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    signature = [
        tf.TensorSpec([None] + spec["shape"][1:], spec["dtype"], name=spec["name"]) for spec in input_specs(model)
    ]
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    except Exception as e:  # tf2onnx raises plain Exceptions/ValueErrors for unsupported ops
        msg = str(e).strip().splitlines()
        raise ConversionError(f"tf2onnx could not export to ONNX opset {opset}: {msg[0][:400] if msg else e}") from None
    return proto.SerializeToString()
