"""What a quantized file itself says about its accuracy: float ops, per-tensor weight scales, saturated I/O.

Read from the file's graph (its tensors' scales and types) and from running it on the evaluation
inputs. TensorFlow-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .naming import layer_of

_WEIGHTED_TFLITE = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D"}


def file_facts(path, fmt, precision, inputs, reference=None, keras3=False, synthetic_calibration=False) -> dict:
    path = Path(path)
    facts = {"synthetic_calibration": bool(synthetic_calibration)}
    if precision == "int8":
        facts["float_ops"] = _float_ops(path, fmt)
        facts["saturated_io"] = _saturated_io(path, inputs, reference)
    if precision.startswith("int8"):
        spreads = (_tflite_weight_spreads if fmt == "tflite" else _onnx_weight_spreads)(path, keras3)
        facts["int8_weight_layers"] = sorted(spreads)
        facts["per_tensor_weights"] = {k: v for k, v in spreads.items() if v["per_tensor"]}
    return facts


def _float_ops(path, fmt) -> list:
    if fmt == "tflite":
        from ..converter.tflite import find_float_ops  # TensorFlow-free: reads the file with LiteRT

        return [f"{op} ({layer})" for op, layer in find_float_ops(path.read_bytes())]
    from ..converter.onnx_quant import coverage

    return [f"{op} x{n}" for op, n in coverage(path.read_bytes())["float_compute_nodes"].items()]


def _saturated_io(path, inputs, reference) -> dict:
    """Share of float input and reference output values beyond what the file's int8 I/O can hold."""
    from ..bench.device.runtimes import open_model
    from .layers import quantized_range

    model = open_model(str(path))
    found = {}
    pairs = [("input", s, x) for s, x in zip(model.input_specs, inputs)]
    pairs += [("output", s, y) for s, y in zip(model.output_specs, reference or [])]
    for kind, spec, values in pairs:
        q = spec.get("quantization")
        if not q or np.dtype(spec["dtype"]).kind not in "iu":
            continue
        lo, hi = quantized_range({**q, "dtype": spec["dtype"]})
        half = q["scale"] / 2  # rounding, not saturation
        values = np.asarray(values, np.float64)
        found[f"{kind} {spec['name']}"] = float(np.mean((values < lo - half) | (values > hi + half)))
    return found


def _tflite_weight_spreads(path, keras3) -> dict:
    """{layer: {"spread": widest / median output channel of max |w|, "per_tensor"}} for int8 weights."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    found = {}
    for op in interp._get_ops_details():
        if op["op_name"] not in _WEIGHTED_TFLITE or len(op["inputs"]) < 2:
            continue
        w = tensors.get(op["inputs"][1])
        if w is None or np.dtype(w["dtype"]) != np.int8:
            continue
        try:
            values = interp.get_tensor(w["index"])
        except ValueError:
            continue
        axis = 3 if op["op_name"] == "DEPTHWISE_CONV_2D" else 0
        found[layer_of(tensors[op["outputs"][0]]["name"], keras3)] = {
            "spread": _spread(values, axis), "per_tensor": len(w["quantization_parameters"]["scales"]) == 1}
    return found


def _onnx_weight_spreads(path, keras3) -> dict:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {i.name: i for i in graph.initializer}
    found = {}
    for node in graph.node:
        pairs = []
        if node.op_type == "DequantizeLinear" and node.input[0] in init:
            pairs.append((node.input[0], node.input[1]))
        elif node.op_type in ("QLinearConv", "QGemm", "QLinearMatMul") and len(node.input) > 4:
            pairs.append((node.input[3], node.input[4]))
        elif node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger") and len(node.input) > 1:
            pairs.append((node.input[1], node.input[2] if node.op_type == "DynamicQuantizeMatMul" else None))
        for weight, scale in pairs:
            if weight not in init:
                continue
            values = numpy_helper.to_array(init[weight])
            if values.dtype not in (np.int8, np.uint8) or values.ndim < 2:
                continue
            per_tensor = scale in init and numpy_helper.to_array(init[scale]).size == 1
            found[layer_of(weight, keras3)] = {
                "spread": _spread(values.astype(np.int32), 0 if values.ndim == 4 else values.ndim - 1),
                "per_tensor": per_tensor}
    return found


def _spread(values, axis) -> float | None:
    per_channel = np.abs(values.astype(np.float64)).max(axis=tuple(i for i in range(values.ndim) if i != axis))
    positive = per_channel[per_channel > 0]
    if positive.size < 2:
        return None
    return float(positive.max() / np.median(positive))
