"""What a model file holds, read from its graph: multiply-accumulates per inference, and its precision.

MACs are counted at batch 1 for the ops that do the arithmetic (convolutions, dense layers, matrix
products, LSTM/GRU cells); cheap elementwise ops are left out, as every MAC counter does. The
precision guess lets a user's standalone files be labelled and compared like converter artifacts.
"""

from __future__ import annotations

from math import prod


def describe(path, fmt) -> dict:
    """{"macs": int, "counted_ops": {op: n}, "precision": str} for a .tflite or .onnx file."""
    return _tflite(path) if fmt == "tflite" else _onnx(path)


# ---- TFLite ----------------------------------------------------------------------------------------
def _tflite(path) -> dict:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default delegate, so the op list is the model's own rather than one DELEGATE node.
    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    tensors = {t["index"]: t for t in it.get_tensor_details()}

    def shape(i):
        return [max(int(d), 1) for d in tensors[i]["shape"]] if i >= 0 else []

    macs, counted, compute_dtypes = 0, {}, []
    for op in it._get_ops_details():
        name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        n = _tflite_op_macs(name, ins, outs, shape)
        if n:
            macs += n
            counted[name] = counted.get(name, 0) + 1
            compute_dtypes.append((tensors[ins[0]]["dtype"].__name__, tensors[ins[1]]["dtype"].__name__))
    dtypes = {t["dtype"].__name__ for t in tensors.values()}
    return {"macs": int(macs), "counted_ops": counted, "precision": _tflite_precision(compute_dtypes, dtypes)}


def _tflite_op_macs(name, ins, outs, shape) -> int:
    if name == "CONV_2D":  # weights [out, kh, kw, in]
        w = shape(ins[1])
        return prod(shape(outs[0])) * w[1] * w[2] * w[3]
    if name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, out]
        w = shape(ins[1])
        return prod(shape(outs[0])) * w[1] * w[2]
    if name == "FULLY_CONNECTED":  # weights [units, in]
        return prod(shape(outs[0])) * shape(ins[1])[-1]
    if name == "BATCH_MATMUL":
        return prod(shape(outs[0])) * shape(ins[0])[-1]
    if name == "TRANSPOSE_CONV":  # inputs: output shape, weights [out, kh, kw, in], input
        w = shape(ins[1])
        return prod(shape(ins[2])) * w[0] * w[1] * w[2]
    if name in ("UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN"):
        x = shape(ins[0])  # [batch, time, features] (or time-major; the product is the same)
        hidden = shape(ins[1])[0] if name.endswith("RNN") else shape(ins[2])[0]
        gates = 4 if "LSTM" in name else 1
        return x[0] * x[1] * gates * hidden * (x[2] + hidden)
    return 0


def _tflite_precision(compute_dtypes, dtypes) -> str:
    if any(a in ("int8", "uint8", "int16") for a, _ in compute_dtypes):
        return "int8"
    if any(w in ("int8", "uint8") for _, w in compute_dtypes):
        return "int8-dynamic"
    if "int8" in dtypes:  # int8 weights dequantized before float compute (ai-edge-quantizer's weight-only)
        return "int8-dynamic"
    return "fp16" if "float16" in dtypes else "fp32"


# ---- ONNX ------------------------------------------------------------------------------------------
def _onnx(path) -> dict:
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    for inp in model.graph.input:  # batch 1 wherever a dimension is symbolic
        for d in inp.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # a graph inference cannot follow: count what the declared shapes allow
        pass
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    macs, counted = 0, {}
    for node in model.graph.node:
        n = _onnx_node_macs(node, shapes)
        if n:
            macs += n
            counted[node.op_type] = counted.get(node.op_type, 0) + 1
    ops = {n.op_type for n in model.graph.node}
    float16 = any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    return {"macs": int(macs), "counted_ops": counted, "precision": _onnx_precision(ops, float16)}


def _onnx_node_macs(node, shapes) -> int:
    op, ins = node.op_type, list(node.input)
    if op in ("Gemm", "QGemm"):  # Y[M, N] = A[M, K] B[K, N], either transposed; QGemm has no shape inference
        a, b = shapes.get(ins[0]), shapes.get(ins[1 if op == "Gemm" else 3])
        if not b:
            return 0
        flags = {at.name: at.i for at in node.attribute}
        k, n = (b[1], b[0]) if flags.get("transB") else (b[0], b[1])
        m = (a[1] if flags.get("transA") else a[0]) if a else 1  # A unknown after a QGemm: batch 1
        return m * k * n
    out = shapes.get(node.output[0]) if node.output else None
    if not out:
        return 0
    weight_index = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}.get(op)
    if weight_index is not None:
        w = shapes.get(ins[weight_index])  # [out, in / groups, kh, kw]
        return prod(out) * prod(w[1:]) if w else 0
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul"):
        a = shapes.get(ins[0])
        return prod(out) * a[-1] if a else 0
    if op in ("LSTM", "GRU", "RNN"):
        x, w, r = shapes.get(ins[0]), shapes.get(ins[1]), shapes.get(ins[2])
        if not (x and w and r):
            return 0
        # W: [directions, gates * hidden, features], R: [directions, gates * hidden, hidden]; X: [T, B, F]
        return x[0] * x[1] * w[0] * w[1] * (w[2] + r[2])
    return 0


def _onnx_precision(ops, float16) -> str:
    if ops & {"QLinearConv", "QLinearMatMul", "QuantizeLinear"} and not ops & {"DynamicQuantizeLinear"}:
        return "int8"
    if ops & {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}:
        return "int8-dynamic"
    return "fp16" if float16 else "fp32"
