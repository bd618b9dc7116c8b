"""LiteRT and onnxruntime behind one small interface: load, describe I/O, encode, invoke, decode.

Self-contained on purpose (numpy and the runtimes only, no edgeopt imports): this file is pushed to
ARM boards and emulators beside the benchmark runner, where edgeopt is not installed.

int8 inputs/outputs are quantized/dequantized with the model's own scale and zero-point in
`encode`/`decode`, outside `invoke`, so that conversion is never counted as inference time.
"""

from __future__ import annotations

import os

import numpy as np

FORMATS = {".tflite": "tflite", ".onnx": "onnx"}
# TFLite ops that keep their recurrent state in variable tensors across invocations (a fused Keras LSTM
# starts each sequence from the state the previous one ended in unless the variables are reset).
STATEFUL_OPS = {"UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_LSTM",
                "BIDIRECTIONAL_SEQUENCE_RNN"}


class ModelOpenError(Exception):
    """The file is not a model this runtime can load (wrong type, corrupt, unsupported op)."""


def detect_format(path) -> str:
    ext = os.path.splitext(str(path))[1].lower()
    if ext in FORMATS:
        return FORMATS[ext]
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == b"TFL3":
        return "tflite"
    raise ModelOpenError(
        f"{os.path.basename(str(path))!r} is neither a TFLite (.tflite, 'TFL3' header) nor an ONNX (.onnx) model"
    )


def import_runtime(fmt):
    """Import the runtime a format needs, so that its own memory is not counted as the model's."""
    if fmt == "tflite":
        import ai_edge_litert.interpreter  # noqa: F401
    else:
        import onnxruntime  # noqa: F401


def open_model(path, threads=None, xnnpack=True, fmt=None, reference=False):
    """Load `path` with the runtime its format needs (`fmt`, else read from the file). `threads=None`: the runtime's choice.

    `reference=True`: the runtime's reference execution, for parity: LiteRT's reference kernels
    (op resolver BUILTIN_REF), onnxruntime with graph optimizations off (a QDQ file then runs as
    DequantizeLinear -> float op -> QuantizeLinear instead of fused int8 kernels). Slow; not for timing.
    """
    if threads is not None and int(threads) < 1:
        raise ValueError(f"thread count must be at least 1, got {threads}")
    if not os.path.exists(path):
        raise ModelOpenError(f"model file {str(path)!r} does not exist")
    fmt = fmt or detect_format(path)
    return (LiteRTModel if fmt == "tflite" else OrtModel)(str(path), threads, xnnpack, reference)


def _np_dtype_name(dtype) -> str:
    return np.dtype(dtype).name


def quantize(x, scale, zero_point, dtype):
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
    return (q.astype(np.float32) - zero_point) * np.float32(scale)


class _Model:
    format = ""
    runtime = ""
    input_specs: list
    output_specs: list

    def encode(self, inputs):
        """Float (or already-typed) arrays -> the arrays the model takes, quantized where its inputs are int."""
        feed = []
        for spec, x in zip(self.input_specs, inputs):
            dtype = np.dtype(spec["dtype"])
            q = spec.get("quantization")
            if q and dtype.kind in "iu" and np.asarray(x).dtype.kind == "f":
                feed.append(quantize(x, q["scale"], q["zero_point"], dtype))
            else:
                feed.append(np.ascontiguousarray(x, dtype=dtype))
        return feed

    def decode(self, raw):
        out = []
        for spec, y in zip(self.output_specs, raw):
            q = spec.get("quantization")
            out.append(dequantize(y, q["scale"], q["zero_point"]) if q else np.asarray(y, np.float32))
        return out

    def predict(self, inputs, batch_size=64):
        """Run every sample; return float outputs. Resizes the batch when the model allows it."""
        inputs = [np.asarray(x) for x in inputs]
        n = len(inputs[0])
        bs = batch_size if self.dynamic_batch else 1
        chunks = []
        for start in range(0, n, bs):
            batch = [x[start : start + bs] for x in inputs]
            self.set_batch(len(batch[0]))
            chunks.append(self.decode(self.invoke(self.encode(batch))))
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(self.output_specs))]


class LiteRTModel(_Model):
    format = "tflite"
    runtime = "ai-edge-litert"

    def __init__(self, path, threads, xnnpack, reference=False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kwargs = {"model_path": path, "num_threads": threads}
        if reference:
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
        elif not xnnpack:
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = Interpreter(**kwargs)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelOpenError(f"LiteRT cannot load {os.path.basename(path)!r}: {str(e).strip()}") from None
        self._batch = None
        self.settings = {"num_threads": threads, "xnnpack": xnnpack and not reference,
                         **({"op_resolver": "BUILTIN_REF"} if reference else {})}
        sig = self.interpreter._get_full_signature_list().get("serving_default", {})
        in_names = {v: k for k, v in sig.get("inputs", {}).items()}
        out_names = {v: k for k, v in sig.get("outputs", {}).items()}
        self._in = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()
        if out_names and len(out_names) == len(self._out):
            # Signature order is the model's declared output order; tensor order is not.
            self._out = sorted(self._out, key=lambda d: list(sig["outputs"]).index(out_names[d["index"]]))
        self.input_specs = [self._spec(d, in_names) for d in self._in]
        self.output_specs = [self._spec(d, out_names) for d in self._out]
        self.dynamic_batch = all(d["shape_signature"][0] == -1 for d in self._in if len(d["shape_signature"]))
        # Each inference is one independent sequence, as in Keras: stateful ops start from zeros every time.
        self.stateful = any(name in STATEFUL_OPS for name in self.ops())

    @staticmethod
    def _spec(d, names):
        scale, zp = d["quantization"]
        return {
            "name": names.get(d["index"], d["name"]),
            "shape": [None if s == -1 else int(s) for s in d["shape_signature"]],
            "dtype": _np_dtype_name(d["dtype"]),
            "quantization": {"scale": float(scale), "zero_point": int(zp)} if scale else None,
        }

    @property
    def delegates(self):
        return ["XNNPACK"] if any(op["op_name"] == "DELEGATE" for op in self.interpreter._get_ops_details()) else []

    def set_batch(self, n):
        if n == self._batch:
            return
        for d in self._in:
            shape = list(d["shape_signature"] if self.dynamic_batch else d["shape"])
            shape = [n if i == 0 else (1 if s == -1 else s) for i, s in enumerate(shape)]
            self.interpreter.resize_tensor_input(d["index"], shape, strict=False)
        self.interpreter.allocate_tensors()
        self._batch = n

    def invoke(self, feed):
        if self.stateful:
            self.interpreter.reset_all_variables()
        for d, x in zip(self._in, feed):
            self.interpreter.set_tensor(d["index"], x)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]) for d in self._out]

    def ops(self):
        """Op names in execution order (before delegation), for reporting and MAC counting."""
        return [op["op_name"] for op in self.interpreter._get_ops_details()]


class OrtModel(_Model):
    format = "onnx"
    runtime = "onnxruntime"
    delegates: list = []

    def __init__(self, path, threads, xnnpack, reference=False):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if reference:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # ORT's defaults otherwise: its pool threads spin briefly after each run (allow_spinning=1).
        self.settings = {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
                         "graph_optimization_level": str(opts.graph_optimization_level)}
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
            raise ModelOpenError(f"onnxruntime cannot load {os.path.basename(path)!r}: {str(e).strip()}") from None
        self.input_specs = [self._spec(i) for i in self.session.get_inputs()]
        self.output_specs = [self._spec(o) for o in self.session.get_outputs()]
        self._in_names = [i.name for i in self.session.get_inputs()]
        self.dynamic_batch = all(s["shape"] and s["shape"][0] is None for s in self.input_specs)

    @staticmethod
    def _spec(node):
        dtype = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
                 "tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64"}.get(node.type, node.type)
        shape = [d if isinstance(d, int) and d >= 0 else None for d in node.shape]
        return {"name": node.name, "shape": shape, "dtype": dtype, "quantization": None}

    def set_batch(self, n):
        pass  # ORT takes any batch on a dynamic axis; a fixed one is fed one sample at a time by predict()

    def invoke(self, feed):
        return self.session.run(None, dict(zip(self._in_names, feed)))
