"""TFLite exports: fp32, fp16, int8 dynamic-range, int8 full-integer (calibrated).

Post-training quantization happens inside TFLiteConverter, so each precision is one conversion of
the model's SavedModel (traced once for every precision, see serving.py).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ConversionError
from .keras_io import tf_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

_IO_TYPES = {"int8": "int8", "uint8": "uint8", "float32": "float32"}
# Ops that only move data between float and int8: not a sign of an unquantized computation.
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
# Ops that read a float tensor without computing on its values: its shape, or token ids cast to integers.
_NO_FLOAT_MATH = {"SHAPE", "CAST"}
# Ops that only move values; left float between DEQUANTIZE and QUANTIZE, they are a detour, not float math.
_DATA_MOVEMENT = {"SPLIT", "SPLIT_V", "UNPACK", "PACK", "RESHAPE", "CONCATENATION", "SLICE", "STRIDED_SLICE",
                  "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "GATHER"}


def convert(serving, converters, precision: str, options: dict, calibration=None, sparse=False) -> bytes:
    """One TFLite file of `serving` (a serving.Serving) at `precision`, converted in the converter process.

    `sparse`: also apply the converter's sparsity optimization (sparse-encoded weights; see tflite_sparse).
    Raise ConversionError naming the cause; a crash of TFLite's converter or calibrator fails this file only.
    """
    from .anatomy import recurrent_layers

    try:
        saved_model = serving.saved_model()
    except Exception as e:  # tracing the model failed: nothing TFLite-specific yet
        raise ConversionError(f"TFLite {precision}: tracing the model failed: {type(e).__name__}: "
                              f"{_first(e)}") from None
    hint = ""
    if precision == "int8":
        recurrent = recurrent_layers(serving.model)
        where = f"the WHILE loops of {', '.join(recurrent)}" if recurrent else "this model on the calibration data"
        hint = (f"TFLite's int8 calibrator runs the model in the TFLite interpreter and cannot run {where}"
                + (": export with recurrent: unroll (the default for int8) or fused" if recurrent else "")
                + " (int8-dynamic gives int8 weights with float activations without calibrating)")
    return converters.call("edgeopt.converter.tflite:convert_saved_model", str(saved_model), precision, options,
                           calibration, serving.batch or 1, sparse, what=f"TFLite {precision} conversion",
                           crash_hint=hint)


def convert_saved_model(saved_model: str, precision, options, calibration, batch, sparse=False) -> bytes:
    """The converter-process side of `convert`: TFLiteConverter on the SavedModel `serving` wrote."""
    import tensorflow as tf

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    except Exception as e:
        raise ConversionError(f"TFLite {precision}: reading the traced model failed: {type(e).__name__}: "
                              f"{_first(e)}") from None
    return configure_and_convert(converter, precision, options, calibration, batch, sparse)


def configure_and_convert(converter, precision, options, calibration, batch, sparse=False) -> bytes:
    """Set `converter` up for `precision`, convert, and refuse an int8 model that left ops in float."""
    configure(converter, precision, options, calibration, batch)
    if sparse:
        import tensorflow as tf

        converter.optimizations = list(converter.optimizations) + [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    try:
        data = converter.convert()
    except Exception as e:  # ConverterError and friends
        raise ConversionError(describe_converter_error(e, precision)) from None
    if precision == "int8" and not options.get("allow_float_ops", False):
        float_ops = find_float_ops(data)
        if float_ops:
            listed = "; ".join(f"{op} (layer {layer!r})" for op, layer in float_ops)
            raise PartialQuantization(
                f"int8 full-integer conversion left {len(float_ops)} op(s) in float32 because TFLite has no "
                f"int8 kernel for them: {listed}. Replace those layers, set the export option "
                "allow_float_ops: true to accept a mixed float/int8 model, or export int8-dynamic instead",
                data,
            )
    return data


def configure(converter, precision, options, calibration, batch):
    """Set a TFLiteConverter's optimizations, calibration and I/O types for `precision` (no conversion)."""
    import tensorflow as tf

    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(calibration, batch)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = options.get("io_type", "int8")
        if io != "float32":
            converter.inference_input_type = getattr(tf, _IO_TYPES[io])
            converter.inference_output_type = getattr(tf, _IO_TYPES[io])
    return converter


class PartialQuantization(ConversionError):
    """int8 conversion succeeded but some ops stayed float: the model is kept, marked failed."""

    def __init__(self, message, model_bytes):
        super().__init__(message)
        self.model_bytes = model_bytes

    def __reduce__(self):  # raised in the converter process, re-raised in the parent
        return type(self), (str(self), self.model_bytes)


def _representative(calibration, batch):
    def gen():
        for i in range(0, len(calibration) - batch + 1, batch):
            yield [x[i : i + batch] for x in calibration.x]

    return gen


def find_float_ops(model_bytes) -> list:
    """(op name, Keras layer name) for every compute op whose tensors are float in a quantized model.

    Not counted: QUANTIZE/DEQUANTIZE; ops that only read a float tensor's shape or cast ids to integers;
    outputs that nothing reads; float detours (float_detours below), which do no arithmetic.
    """
    graph = _Graph(model_bytes)
    return [graph.describe(op) for op in graph.ops if graph.floating(op) and not graph.detour(op)]


def float_detours(model_bytes) -> list:
    """'OP (layer)' for each data-movement op left float between DEQUANTIZE and QUANTIZE.

    TFLiteConverter leaves a SPLIT float when one of its outputs is read by nothing (in an unrolled LSTM:
    the first step's forget gate, which met the zero initial state and was folded away): its other outputs
    are quantized again at once. No arithmetic runs in float, but the file is not pure int8 for an
    int8-only accelerator, so the manifest lists them.
    """
    graph = _Graph(model_bytes)
    return [f"{op} ({layer})" for op, layer in (graph.describe(o) for o in graph.ops if graph.detour(o))]


class _Graph:
    def __init__(self, model_bytes):
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_content=model_bytes)
        self.tensors = {t["index"]: t for t in interp.get_tensor_details()}
        self.ops = interp._get_ops_details()
        self.producer = {o: op["op_name"] for op in self.ops for o in op["outputs"]}
        self.readers = {}
        for op in self.ops:
            for i in op["inputs"]:
                self.readers.setdefault(i, []).append(op["op_name"])
        for d in interp.get_output_details():
            self.readers.setdefault(d["index"], []).append("OUTPUT")

    def _float(self, i):
        return i >= 0 and self.tensors[i]["dtype"] == np.float32

    def floating(self, op) -> bool:
        if op["op_name"] in _BOUNDARY_OPS or self._integer_result(op):
            return False
        return any(self._float(i) for i in list(op["inputs"]) + [o for o in op["outputs"] if o in self.readers])

    def detour(self, op) -> bool:
        float_in = [i for i in op["inputs"] if self._float(i)]
        float_out = [o for o in op["outputs"] if self._float(o)]
        return (op["op_name"] in _DATA_MOVEMENT and bool(float_in or float_out)
                and all(self.producer.get(i) == "DEQUANTIZE" for i in float_in)
                and all(set(self.readers.get(o, [])) <= {"QUANTIZE"} for o in float_out))

    def _integer_result(self, op) -> bool:
        outputs = [self.tensors[i]["dtype"] for i in op["outputs"] if i >= 0]
        return op["op_name"] in _NO_FLOAT_MATH and all(np.issubdtype(d, np.integer) for d in outputs)

    def describe(self, op):
        return op["op_name"], layer_from_tensor_name(self.tensors[op["outputs"][0]]["name"])


def layer_from_tensor_name(name: str) -> str:
    """'model/tf.math.sin/Sin' -> 'tf.math.sin'; 'sequential/dense/MatMul' -> 'dense'."""
    parts = name.split(";")[0].split("/")
    return parts[1] if len(parts) > 2 else parts[0]


def describe_converter_error(e, precision) -> str:
    """Turn TFLiteConverter's MLIR dump into one actionable sentence naming the ops and layers."""
    text = str(e)
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    layers = sorted({layer_from_tensor_name(m) for m in re.findall(r'"([\w./-]+/\w+)@__inference', text)})
    if ops:
        where = f" (in layer {', '.join(map(repr, layers))})" if layers else ""
        return (
            f"TFLite {precision} conversion failed: TensorFlow op(s) {', '.join(ops)}{where} have no TFLite "
            "builtin kernel. Replace them with supported ops, or build a model that needs no Flex (TF Select) ops"
        )
    if "TensorListReserve" in text or "element_shape to be static" in text:
        return (
            f"TFLite {precision} conversion failed: a recurrent layer needs a static batch size "
            "(tf.TensorListReserve requires a static element_shape). Fix the model's batch size to 1 and retry"
        )
    ops = sorted(set(re.findall(r"'tfl?\.(\w+)' op", text)))
    if "quantiz" in text.lower() and ops:
        return (f"TFLite {precision} conversion failed: op(s) {', '.join(ops)} could not be quantized "
                f"({_first(e)}); the float exports are unaffected")
    first = next((line for line in text.splitlines() if "error:" in line), text.splitlines()[0] if text else "")
    return f"TFLite {precision} conversion failed: {first.strip()[:400]}"


def _first(e) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return lines[0][:400] if lines else type(e).__name__
