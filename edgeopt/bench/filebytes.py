"""Where a model file's bytes go, and why an int8 file can be no smaller than its fp32 parent, or larger.

int8 stores each weight in a quarter of the bytes, but quantization adds bookkeeping: a scale and a
zero point per tensor (or per channel), QuantizeLinear/DequantizeLinear nodes with long tensor
names in ONNX, and shape annotations. On a model with few weights that outweighs what int8 saves,
and tools leave some weights in float (TFLite's dynamic-range quantization skips tensors under 1024
elements; onnxruntime's dynamic quantization covers MatMul/Gemm, not Conv). The figures here are read
from the files themselves (onnx's protobuf, LiteRT's flatbuffer schema); no tool reports them.

TensorFlow-free.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..table import human_bytes

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QUANTIZE", "DEQUANTIZE"}
TFLITE_SMALL_TENSOR = 1024  # TFLite's dynamic-range quantization leaves weights with fewer elements in float


SHRINK_EXPECTED = 0.9  # an int8 file at or above this share of its fp32 baseline's size gets an explanation


def size_note(name, path, fmt, precision, base_name, base_path) -> str | None:
    """The explanation for a quantized file that did not shrink against its fp32 baseline, else None."""
    if not str(precision).startswith("int8") or not path or not base_path or name == base_name:
        return None
    try:
        parts, base = _cached(str(path), fmt, _stamp(path)), _cached(str(base_path), fmt, _stamp(base_path))
    except Exception:  # the note is a nicety: a file it cannot parse must not cost the report
        return None
    if parts["total"] < SHRINK_EXPECTED * base["total"]:
        return None
    return why_not_smaller(name, parts, base_name, base)


def _stamp(path):
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _cached(path, fmt, _stamp):
    return breakdown(path, fmt)


def breakdown(path, fmt) -> dict:
    """{"total", "float_weights", "int_weights", "quant_params", "qdq_nodes", "other_nodes", "annotations",
    "names", "counts": {...}, "float_weight_users": [op types]} in bytes (each part with its names)."""
    return _onnx(Path(path)) if fmt == "onnx" else _tflite(Path(path))


# ---- ONNX ------------------------------------------------------------------------------------------
_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_INT_TYPES = {2, 3, 4, 5, 6, 12, 21, 22}  # UINT8, INT8, UINT16, INT16, INT32, UINT32, UINT4, INT4 (not INT64 shapes)


def _onnx(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    params = _onnx_quant_param_names(model)
    users = {}
    for node in g.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    parts = dict.fromkeys(("float_weights", "int_weights", "quant_params", "qdq_nodes", "other_nodes"), 0)
    counts = {"quant_params": 0, "qdq_nodes": 0, "weights": 0}
    float_users = set()
    for t in g.initializer:
        if t.name in params:
            parts["quant_params"] += t.ByteSize()
            counts["quant_params"] += 1
        elif t.data_type in _FLOAT_TYPES or t.data_type in _INT_TYPES:
            kind = "float_weights" if t.data_type in _FLOAT_TYPES else "int_weights"
            parts[kind] += t.ByteSize()
            counts["weights"] += _elements(t.dims)
            if kind == "float_weights":
                float_users |= users.get(t.name, set())
    for node in g.node:
        qdq = node.op_type in QDQ_OPS
        parts["qdq_nodes" if qdq else "other_nodes"] += node.ByteSize()
        counts["qdq_nodes"] += qdq
    parts["annotations"] = sum(v.ByteSize() for v in g.value_info)
    names = sum(len(t.name) for t in g.initializer) + sum(len(v.name) for v in g.value_info)
    names += sum(len(n.name) + sum(map(len, n.input)) + sum(map(len, n.output)) for n in g.node)
    return {"total": path.stat().st_size, **parts, "names": names, "counts": counts,
            "float_weight_users": sorted(float_users), "small_float_weights": False}


def _onnx_quant_param_names(model) -> set:
    """Initializers a node takes as a scale or zero point, by the input's name in the op's schema."""
    from onnx import defs

    opset = {o.domain or "": o.version for o in model.opset_import}
    found = set()
    for node in model.graph.node:
        try:
            schema = defs.get_schema(node.op_type, opset.get(node.domain or "", 1), node.domain or "")
        except Exception:  # a contrib op onnx does not know: its inputs stay uncounted
            continue
        formal = [i.name for i in schema.inputs]
        for i, name in enumerate(node.input):
            slot = formal[min(i, len(formal) - 1)] if formal else ""
            # onnxruntime's quantizer names what it adds *_scale / *_zero_point, also where a plain Mul
            # applies a weight's scale (dynamic quantization)
            if "scale" in slot or "zero_point" in slot or name.endswith(("_scale", "_zero_point")):
                found.add(name)
    return found


def _elements(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


# ---- TFLite ----------------------------------------------------------------------------------------
def _tflite(path: Path) -> dict:
    from ai_edge_litert import schema_py_generated as schema

    buf = path.read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    qdq_codes = {schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE}
    parts = dict.fromkeys(("float_weights", "int_weights", "quant_params"), 0)
    counts = {"quant_params": 0, "qdq_nodes": 0, "weights": 0}
    seen, names, small_float = set(), 0, []
    floats = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16, schema.TensorType.FLOAT64}
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for i in range(sub.OperatorsLength()):
            counts["qdq_nodes"] += codes[sub.Operators(i).OpcodeIndex()] in qdq_codes
        for i in range(sub.TensorsLength()):
            t = sub.Tensors(i)
            names += len(t.Name() or b"")
            q = t.Quantization()
            if q is not None and q.ScaleLength():
                parts["quant_params"] += 4 * (q.ScaleLength() + q.MinLength() + q.MaxLength()) + 8 * q.ZeroPointLength()
                counts["quant_params"] += q.ScaleLength()
            size = _buffer_size(model, t.Buffer())
            if not size or t.Buffer() in seen:
                continue
            seen.add(t.Buffer())
            elements = _elements(t.ShapeAsNumpy()) if t.ShapeLength() else 1
            counts["weights"] += elements
            kind = "float_weights" if t.Type() in floats else "int_weights"
            parts[kind] += size
            if kind == "float_weights":
                small_float.append(elements < TFLITE_SMALL_TENSOR)
    return {"total": len(buf), **parts, "qdq_nodes": 0, "other_nodes": 0, "annotations": 0, "names": names,
            "counts": counts, "float_weight_users": [], "small_float_weights": bool(small_float) and all(small_float)}


def _buffer_size(model, index) -> int:
    if index <= 0 or index >= model.BuffersLength():  # buffer 0 is the empty sentinel
        return 0
    b = model.Buffers(index)
    return b.DataLength() or (b.Size() if b.Offset() > 1 else 0)


# ---- the sentence ----------------------------------------------------------------------------------
def why_not_smaller(name, parts, base_name, base) -> str:
    """Why `name` (quantized) is not smaller than `base` (its fp32 baseline), in figures from both files."""
    ratio = parts["total"] / base["total"]
    weights, base_weights = parts["float_weights"] + parts["int_weights"], base["float_weights"] + base["int_weights"]
    held = [f"{human_bytes(parts[k])} {label}" for k, label in (("int_weights", "integer"), ("float_weights", "float"))
            if parts[k]]
    text = (f"{name} is {ratio:.2f}x the size of {base_name} ({human_bytes(parts['total'])} against "
            f"{human_bytes(base['total'])}): its weights take {human_bytes(weights)}"
            + (f" ({', '.join(held)})" if len(held) > 1 else _as_what(parts))
            + f", against {human_bytes(base_weights)} in {base_name}")
    if parts["float_weights"] > 0.25 * max(weights, 1):
        text += f"; {human_bytes(parts['float_weights'])} of weights stay in float" + _why_float(parts)
    growth = [(delta, label) for delta, label in _growth(parts, base) if delta > 0.01 * parts["total"]]
    if growth:
        text += "; quantization added " + _join([f"{human_bytes(delta)} of {label}" for delta, label in growth])
    if parts["names"] > 0.2 * parts["total"]:
        text += f"; tensor and node names take {human_bytes(parts['names'])} of the file"
    if base_weights - weights < sum(delta for delta, _ in growth):
        text += (f". With {parts['counts']['weights']:,} weights, what int8 saves is less than the bookkeeping "
                 "it adds: int8 shrinks a file only when the weights are most of it")
    return text + "."


def _as_what(parts) -> str:
    return " as integers" if parts["int_weights"] else " in float" if parts["float_weights"] else ""


def _why_float(parts) -> str:
    if parts["small_float_weights"]:
        return f" (every float tensor has under {TFLITE_SMALL_TENSOR} elements, which TFLite's dynamic-range " \
               "quantization leaves in float)"
    users = [u for u in parts["float_weight_users"] if u not in QDQ_OPS]
    return f" (weights of {', '.join(users)}, which this quantization does not cover)" if users else ""


def _growth(parts, base) -> list:
    qdq, params = parts["counts"]["qdq_nodes"], parts["counts"]["quant_params"]
    return [
        (parts["qdq_nodes"] - base["qdq_nodes"], _count(qdq, "quantize/dequantize node")),
        (parts["quant_params"] - base["quant_params"], _count(params, "scale or zero point", "scales and zero points")),
        (parts["other_nodes"] - base["other_nodes"], "other nodes"),
        (parts["annotations"] - base["annotations"], "shape annotations"),
    ]


def _count(n, one, many=None) -> str:
    return f"{n} {one}" if n == 1 else f"{n} {many or one + 's'}"


def _join(items) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
