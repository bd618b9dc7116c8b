"""Every layer's output, read from a .tflite or .onnx file as it runs: the raw material of per-layer error.

- TFLite: LiteRT's `experimental_preserve_all_tensors` keeps every intermediate tensor readable
  (with LiteRT's built-in kernels: XNNPACK's fused buffers are not tensors of the file).
- ONNX: every activation becomes a graph output and the session runs with graph optimisations off,
  as onnxruntime's `qdq_loss_debug.collect_activations` does, so every tensor exists. QDQ files are
  read after each DequantizeLinear (the value the next op sees, as `create_activation_matching`
  pairs them); QOperator files' (u)int8 activations are dequantized with the file's own scale and
  zero point.

Each layer (named as in Keras, see naming.py) is read at the last tensor its ops produce, in the
graph's execution order. Integer tensors come back dequantized. TensorFlow-free.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .naming import layer_of


@dataclass
class Tap:
    """Where one layer's output is read, and how its integer values map back to floats."""

    layer: str
    tensor: str
    op: str
    quantization: dict | None = None  # {"scale", "zero_point", "dtype"} of an integer tensor
    channel_axis: int = -1  # NHWC in TFLite, NCHW in ONNX
    extra: dict = field(default_factory=dict)

    @property
    def bounds(self) -> dict | None:
        """The quantization that bounds this layer's values: its own, or (QDQ) its DequantizeLinear's."""
        return self.quantization or self.extra.get("range_of")


def open_taps(path, keras3=False, output_layers=None):
    """Taps on every layer of `path`; `output_layers` names the model's outputs (the Keras output layers)."""
    path = Path(path)
    return (TfliteTaps if path.suffix == ".tflite" else OnnxTaps)(path, keras3, output_layers)


class TfliteTaps:
    """A .tflite file under LiteRT's built-in kernels with every tensor preserved."""

    def __init__(self, path, keras3=False, output_layers=None):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.path = Path(path)
        self.interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interp.allocate_tensors()
        self.inputs = self.interp.get_input_details()
        self.dynamic_batch = all(d["shape_signature"][0] == -1 for d in self.inputs if len(d["shape_signature"]))
        self.taps = self._find_taps(keras3, output_layers)
        self._batch = None

    def _find_taps(self, keras3, output_layers):
        tensors = {t["index"]: t for t in self.interp.get_tensor_details()}
        outputs = _tflite_output_names(self.interp, output_layers)
        taps = {}
        for op in self.interp._get_ops_details():
            index = next((i for i in op["outputs"] if i >= 0), None)
            t = tensors.get(index)
            if t is None or np.dtype(t["dtype"]).kind not in "fiu" or np.dtype(t["dtype"]) == np.int32:
                continue  # shapes and indices, not activations
            name = t["name"]
            layer = outputs.get(index) or layer_of(name, keras3)
            scale, zero = t["quantization"]
            quant = {"scale": float(scale), "zero_point": int(zero), "dtype": np.dtype(t["dtype"]).name} \
                if scale and np.dtype(t["dtype"]).kind in "iu" else None
            taps.pop(layer, None)  # re-insert: the dict's order is the order layers finish in
            taps[layer] = Tap(layer, name, op["op_name"], quant, -1, {"index": index, "node": str(op["index"])})
        return taps

    def run(self, xs: list) -> dict:
        """{layer: float array} for the samples in `xs` (one array per model input)."""
        n = len(xs[0])
        if self.dynamic_batch or n == 1:
            return self._invoke(xs)
        parts = [self._invoke([x[i:i + 1] for x in xs]) for i in range(n)]  # a fixed-batch file: one at a time
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _invoke(self, xs):
        n = len(xs[0])
        if n != self._batch:
            for d in self.inputs:
                self.interp.resize_tensor_input(d["index"], [n, *d["shape"][1:]], strict=False)
            self.interp.allocate_tensors()
            self._batch = n
        for d, x in zip(self.inputs, xs):
            self.interp.set_tensor(d["index"], _encode(x, d))
        self.interp.invoke()
        return {layer: _decode(self.interp.get_tensor(tap.extra["index"]), tap.quantization)
                for layer, tap in self.taps.items()}

    def close(self):
        self.interp = None


def _tflite_output_names(interp, output_layers=None) -> dict:
    """{tensor index: output name}: the Keras output layers in the serving signature's order, else its keys."""
    sig = interp._get_full_signature_list().get("serving_default", {}).get("outputs", {})
    names = dict(sig) if sig else {d["name"]: d["index"] for d in interp.get_output_details()}
    if output_layers and len(output_layers) == len(names):
        return {index: layer for layer, index in zip(output_layers, names.values())}
    return {index: name for name, index in names.items()}


def _encode(x, detail):
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale and dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(np.asarray(x, np.float32) / scale) + zero, info.min, info.max).astype(dtype)
    return np.ascontiguousarray(x, dtype=dtype)


def _decode(value, quant):
    if quant:
        return (value.astype(np.float32) - quant["zero_point"]) * np.float32(quant["scale"])
    return np.asarray(value, np.float32)


class OnnxTaps:
    """An .onnx file with every activation made a graph output, run with graph optimisations off."""

    def __init__(self, path, keras3=False, output_layers=None):
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        self._tmp = Path(tempfile.mkdtemp(prefix="edgeopt-taps-"))
        model = onnx.load(str(path))
        quantized, self.dequantized = _quantization(model)
        self.taps = self._find_taps(model, quantized, keras3, output_layers)
        augmented = self._tmp / "augmented.onnx"
        known = {t.tensor: t.quantization["elem_type"] for t in self.taps.values() if t.quantization}
        onnx.save(_with_outputs(model, [t.tensor for t in self.taps.values()], known), str(augmented))
        opts = ort.SessionOptions()
        # As qdq_loss_debug.collect_activations runs: fused kernels would not produce these tensors.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(augmented), opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.dynamic_batch = True

    def _find_taps(self, model, quantized: dict, keras3, output_layers):
        from onnxruntime.quantization.quant_utils import QUANT_INPUT_SUFFIX

        graph = model.graph
        outputs = {o.name: o.name for o in graph.output}
        if output_layers and len(output_layers) == len(outputs):
            outputs = dict(zip(outputs, output_layers))
        weights = {i.name for i in graph.initializer}
        live = {i.name for i in graph.input} - weights  # tensors that depend on the model's inputs
        taps = {}
        for node in graph.node:
            if not any(i in live for i in node.input):
                continue  # weight dequantization and other constant folding
            live.update(o for o in node.output if o)
            name = node.output[0]
            if node.op_type == "QuantizeLinear" and not name.endswith("_quantized"):
                continue  # QDQ: the value the next op sees is read at the DequantizeLinear output
            if node.op_type == "DynamicQuantizeLinear":
                continue  # dynamic int8 made at run time for the next MatMulInteger: its float input is the layer's
            if name.endswith(QUANT_INPUT_SUFFIX):
                name_for_layer = name[: -len(QUANT_INPUT_SUFFIX)]
            else:
                name_for_layer = name
            layer = outputs.get(name) or layer_of(name_for_layer, keras3)
            taps.pop(layer, None)
            taps[layer] = Tap(layer, name, node.op_type, quantized.get(name), 1,
                              {"range_of": self.dequantized.get(name), "node": node.name})
        return taps

    def run(self, xs: list) -> dict:
        values = dict(zip(self.output_names, self.session.run(None, dict(zip(self.input_names, xs)))))
        found = {}
        for layer, tap in self.taps.items():
            value = values.get(tap.tensor)
            if value is not None and (tap.quantization or np.asarray(value).dtype.kind == "f"):
                found[layer] = _decode(value, tap.quantization)
        return found

    def close(self):
        self.session = None
        shutil.rmtree(self._tmp, ignore_errors=True)


def _with_outputs(model, names, known_types):
    """A copy of `model` whose graph also outputs `names`.

    Written here rather than with qdq_loss_debug.modify_model_output_intermediate_tensors: that tool
    flattens every saved tensor to 1-D and keeps only float ones, and the cause analysis needs each
    tensor's channel axis and the (u)int8 activations of QOperator files.
    """
    import copy

    import onnx
    from onnx import helper

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    types.update({k: v for k, v in known_types.items() if not types.get(k)})  # ORT's own ops infer no type
    augmented = copy.deepcopy(model)
    present = {o.name for o in augmented.graph.output}
    for name in names:
        if name not in present and types.get(name):
            augmented.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
    return augmented


def _quantization(model) -> dict:
    """{tensor: scale, zero point, dtype} of every quantized activation.

    QOperator: ORT names a (u)int8 activation's parameters '<tensor>_scale' / '<tensor>_zero_point',
    and ops that only move data (MaxPool, Reshape, Transpose) keep their input's. QDQ: the
    parameters of each DequantizeLinear, recorded on its (float) output, whose values they bound.
    """
    init = {i.name: i for i in model.graph.initializer}
    found, dequantized = {}, {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) >= 3:
            params = _params(init.get(node.input[1]), init.get(node.input[2]))
            if params and params["per_tensor"]:
                dequantized[node.output[0]] = params
        for name in node.output:
            if not name.endswith("_quantized"):
                continue
            base = name[: -len("_quantized")]
            params = _params(init.get(base + "_scale"), init.get(base + "_zero_point"))
            if params:
                found[name] = params
            elif node.input and node.input[0] in found:
                found[name] = found[node.input[0]]
    return found, dequantized


def _params(scale, zero):
    from onnx import numpy_helper

    if scale is None or zero is None:
        return None
    s, zp = numpy_helper.to_array(scale), numpy_helper.to_array(zero)
    return {"scale": float(s.reshape(-1)[0]), "zero_point": int(zp.reshape(-1)[0]), "dtype": zp.dtype.name,
            "elem_type": zero.data_type, "per_tensor": s.size == 1}
