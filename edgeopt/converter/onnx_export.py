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


def export_quantization_aware(serving, opset: int, calibration) -> tuple[bytes, dict]:
    """ONNX int8 of a quantization-aware (QAT) model: its learned ranges as QDQ nodes, weights stored int8.

    tf2onnx's TensorFlow frontend turns the activations' FakeQuantWithMinMaxVars into QDQ pairs but has no
    handler for the weights' FakeQuantWithMinMaxVarsPerChannel, which TensorFlow then folds into float
    constants: a file as large as fp32 that computes in float. So the model goes through TFLiteConverter
    (which reads the learned ranges; float inputs and outputs) and tf2onnx's TFLite frontend, which writes
    int8 weights with DequantizeLinear.
    """
    import tempfile
    from pathlib import Path

    import tf2onnx

    from . import tflite
    from .onnx_quant import coverage

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    int8 = tflite.convert(serving, "int8", {"io_type": "float32", "allow_float_ops": False}, calibration)
    with tempfile.TemporaryDirectory(prefix="edgeopt-export-") as tmp:
        path = Path(tmp) / "qat.int8.tflite"
        path.write_bytes(int8)
        try:
            proto, _ = tf2onnx.convert.from_tflite(str(path), opset=opset)
        except Exception as e:  # tf2onnx raises plain Exceptions for unsupported TFLite ops
            msg = str(e).strip().splitlines()
            raise ConversionError(f"tf2onnx could not convert the QAT model's int8 TFLite file to ONNX opset {opset}: "
                                  f"{msg[0][:400] if msg else e}") from None
    blob = proto.SerializeToString()
    return blob, {"made_by": "TFLiteConverter (QAT ranges) -> tf2onnx from_tflite", **coverage(blob),
                  "onnxruntime_kernels": runtime_kernels(blob)}


def runtime_kernels(model_bytes) -> dict:
    """Compute ops onnxruntime runs with integer kernels vs in float, after its own graph optimisation here."""
    import collections
    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgeopt-export-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    integer = {k: v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "MatMulInteger", "ConvInteger"))}
    floating = {k: v for k, v in ops.items() if k in ("Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul")}
    return {"integer": integer, "float": floating}
