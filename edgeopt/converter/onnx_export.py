"""ONNX fp32 export with tf2onnx, from the SavedModel serving.py traced (in the converter process)."""

from __future__ import annotations

import logging

from ..errors import ConversionError
from .keras_io import output_specs, tf_keras  # noqa: F401  (tf_keras: sets TF_USE_LEGACY_KERAS first)


def export(serving, converters, opset: int) -> bytes:
    """ONNX fp32 of `serving` (a serving.Serving), dynamic batch; a crash of tf2onnx fails this file only."""
    try:
        saved_model = serving.saved_model(batch=None)
    except Exception as e:
        first = str(e).strip().splitlines()
        raise ConversionError(f"ONNX export: tracing the model failed: {type(e).__name__}: "
                              f"{first[0][:400] if first else ''}") from None
    output_names = [spec["name"] for spec in output_specs(serving.model)]
    return converters.call("edgeopt.converter.onnx_export:export_saved_model", str(saved_model), opset, output_names,
                           what=f"ONNX opset {opset} export (tf2onnx)")


def export_saved_model(saved_model: str, opset: int, output_names=None) -> bytes:
    """The converter-process side of `export`: tf2onnx on the restored 'serve' function.

    Inputs and outputs keep the names of the traced signature (the Keras input and output names), and
    the outputs the Keras order `output_names` (a restored function lists named outputs sorted by name).
    """
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    restored = tf.saved_model.load(saved_model)  # held while tf2onnx runs: it owns the variables
    signature = restored.serve.concrete_functions[0].structured_input_signature[0]
    try:
        proto, _ = tf2onnx.convert.from_function(restored.serve, input_signature=list(signature), opset=opset)
    except Exception as e:  # tf2onnx raises plain Exceptions/ValueErrors for unsupported ops
        msg = str(e).strip().splitlines()
        raise ConversionError(f"tf2onnx could not export to ONNX opset {opset}: {msg[0][:400] if msg else e}") from None
    _strip_call_prefix(proto.graph)
    _keras_output_order(proto.graph, output_names)
    return proto.SerializeToString()


def _keras_output_order(graph, names):
    by_name = {o.name: o for o in graph.output}
    if names and sorted(by_name) == sorted(names) and len(set(names)) == len(names):
        ordered = [type(by_name[n])() for n in names]
        for copy, n in zip(ordered, names):
            copy.CopyFrom(by_name[n])
        del graph.output[:]
        graph.output.extend(ordered)


_CALL_PREFIXES = ("StatefulPartitionedCall/", "PartitionedCall/")


def _strip_call_prefix(graph):
    """Name nodes and tensors as tf2onnx names them from the Keras model ('digits_cnn/conv1/Relu').

    The restored function wraps the model's graph in a call op, whose name tf2onnx puts in front of every
    name; tools that map ONNX nodes back to Keras layers read the names. Nothing is renamed if two names
    would become one.
    """
    graphs = list(_with_subgraphs(graph))  # Loop/If/Scan bodies (recurrent layers) refer to outer names
    tensors = {t for g in graphs for n in g.node for t in [*n.input, *n.output]} | \
              {e.name for g in graphs for e in [*g.initializer, *g.value_info, *g.input, *g.output]}
    nodes = [n.name for g in graphs for n in g.node]
    if len({_stripped(t) for t in tensors}) != len(tensors) or len({_stripped(n) for n in nodes}) != len(set(nodes)):
        return
    for g in graphs:
        for node in g.node:
            node.name = _stripped(node.name)
            node.input[:] = [_stripped(t) for t in node.input]
            node.output[:] = [_stripped(t) for t in node.output]
        for entry in [*g.initializer, *g.value_info, *g.input, *g.output]:
            entry.name = _stripped(entry.name)


def _stripped(name):
    return next((name[len(p):] for p in _CALL_PREFIXES if name.startswith(p)), name)


def _with_subgraphs(graph):
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for body in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _with_subgraphs(body)


def export_quantization_aware(serving, converters, opset: int, calibration) -> tuple[bytes, dict]:
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
    int8 = tflite.convert(serving, converters, "int8", {"io_type": "float32", "allow_float_ops": False}, calibration)
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
