"""ONNX int8: static (QDQ or QOperator, calibrated) and dynamic quantization with onnxruntime.

TensorFlow-free: ONNX quantization is a pass over an already exported fp32 model.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConversionError
from .onnx_variants import ort_arguments

_COMPUTE_OPS = {"Conv", "MatMul", "Gemm", "ConvTranspose"}
_QUANTIZED_COMPUTE_OPS = {"QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"}


CALIBRATION_CHUNK = 16  # samples whose intermediate tensors ORT's calibrator holds at once


def calibration_stride(n: int) -> int:
    """The largest chunk of at most CALIBRATION_CHUNK samples that divides `n` (ORT requires a divisor)."""
    return max(d for d in range(1, min(CALIBRATION_CHUNK, max(n, 1)) + 1) if n % d == 0) if n else 1


def quantize_static(fp32_path, calibration, options: dict, cache_dir=None, nodes_to_exclude=None) -> tuple[bytes, dict]:
    """Calibrated int8 of `fp32_path`; returns (model bytes, facts for the manifest).

    With `cache_dir`, the preprocessed model and the calibrated tensor ranges are kept there and reused by
    the next static int8 file of the same fp32 model and calibration data (QDQ and QOperator share them):
    calibration runs the model on every sample, and is done once per run instead of once per file.
    `nodes_to_exclude`: node names (of the preprocessed graph) to keep in float (converter.selective).
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    logging.getLogger("root").setLevel(logging.ERROR)  # ORT's quantizer logs through the root logger
    qdq = options.get("quant_format", "qdq") == "qdq"
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.get("calibration_method", "minmax")]
    # The variant is concrete here (the pipeline resolved `auto` for its targets): see onnx_variants.py.
    variant = options.get("int8_variant", "s8")
    types = ort_arguments("s8" if variant == "auto" else variant, options.get("quant_format", "qdq"))

    class Reader(CalibrationDataReader):
        """One sample at a time, within the range ORT's strided calibration asks for (set_range)."""

        def __init__(self, names):
            self.names = names
            self.set_range(0, len(calibration))

        def __len__(self):
            return len(calibration)

        def set_range(self, start_index, end_index):
            self._it = ({n: x[i : i + 1] for n, x in zip(self.names, calibration.x)}
                        for i in range(start_index, min(end_index, len(calibration))))

        def get_next(self):
            return next(self._it, None)

    # ORT's calibrators keep every intermediate tensor of every sample until they compute ranges or histograms
    # (a MobileNetV2-224: ~64 MB a sample, so 500 samples were OOM-killed at 24 GB); strided calibration hands
    # them CALIBRATION_CHUNK samples at a time and merges (min/max exactly, histograms by ORT's own merge).
    extra_options = {"CalibTensorRangeSymmetric": False, "CalibStridedMinMax": calibration_stride(len(calibration))}
    with tempfile.TemporaryDirectory(prefix="edgeopt-ortq-") as tmp:
        cache = _Cache(Path(cache_dir or tmp), fp32_path, calibration, method, extra_options)
        source, facts = cache.preprocessed()
        out = Path(tmp) / "quantized.onnx"
        facts["calibration_reused"] = cache.ranges.exists()
        try:
            ort_quantize_static(
                str(source), str(out), Reader(_input_names(source)),
                quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                per_channel=bool(options.get("per_channel", True)), calibrate_method=method,
                extra_options=extra_options, calibration_cache_path=str(cache.ranges),
                nodes_to_exclude=list(nodes_to_exclude or []), **types,
            )
        except Exception as e:  # ORT raises bare Exceptions for unsupported graphs
            raise ConversionError(f"onnxruntime static quantization failed: {type(e).__name__}: {e}") from None
        data = out.read_bytes()
    facts.update({"activation_type": types["activation_type"].name, "weight_type": types["weight_type"].name,
                  "reduce_range": types["reduce_range"], **coverage(data)})
    return data, facts


def quantize_dynamic(fp32_path, nodes_to_exclude=None) -> tuple[bytes, dict]:
    """int8 weights of MatMul/Gemm with activations quantized at run time.

    Conv is left in float: ORT's CPU ConvInteger has no kernel for int8 weights, so quantizing it
    would produce a model that does not load.
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="edgeopt-ortq-") as tmp:
        out = Path(tmp) / "quantized.onnx"
        try:
            ort_quantize_dynamic(str(fp32_path), str(out), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=list(nodes_to_exclude or []))
        except Exception as e:
            raise ConversionError(f"onnxruntime dynamic quantization failed: {type(e).__name__}: {e}") from None
        data = out.read_bytes()
    return data, {"weight_type": "QInt8", "op_types_to_quantize": ["MatMul", "Gemm"], **coverage(data)}


class _Cache:
    """Where one fp32 model's preprocessed copy and calibrated ranges live, keyed by what they depend on.

    The ranges file is onnxruntime's own calibration cache (`calibration_cache_path`), valid for the same
    preprocessed model, calibration samples, method and calibrator options.
    """

    def __init__(self, folder: Path, fp32_path, calibration, method, extra_options):
        model_key = _digest(Path(fp32_path).read_bytes())
        data = hashlib.sha256()
        for x in calibration.x:
            data.update(repr((x.dtype.str, x.shape)).encode())
            data.update(np.ascontiguousarray(x).data)
        ranges_key = _digest(f"{model_key} {data.hexdigest()} {method} {sorted(extra_options.items())}".encode())
        self.fp32_path, self.model_key = Path(fp32_path), model_key
        self.folder = folder
        self.ranges = folder / f"ranges-{ranges_key}.json"

    def preprocessed(self):
        """(model to quantize, facts): ORT's recommended shape inference and graph optimisation, done once."""
        pre = self.folder / f"preprocessed-{self.model_key}.onnx"
        failed = self.folder / f"preprocessed-{self.model_key}.error"
        if pre.exists():
            return pre, {"preprocessed": True}
        if not failed.exists():
            source, facts = preprocess(self.fp32_path, pre)
            if facts["preprocessed"]:
                return source, facts
            failed.write_text(facts["preprocess_error"])
        return self.fp32_path, {"preprocessed": False, "preprocess_error": failed.read_text()}


def preprocess(fp32_path: Path, pre: Path):
    """(model to quantize, facts): ORT's recommended shape inference and graph optimisation, written to `pre`."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        return pre, {"preprocessed": True}
    except Exception as e:  # preprocessing is an optimisation: quantize the plain model instead
        pre.unlink(missing_ok=True)
        return Path(fp32_path), {"preprocessed": False, "preprocess_error": f"{type(e).__name__}: {e}"[:300]}


def _digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:24]


def _input_names(path):
    import onnx

    model = onnx.load(str(path))
    init = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in init]


def coverage(model_bytes) -> dict:
    """Which compute ops ended up integer: the proof that quantization did what it claims."""
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    producers = {o: n.op_type for n in graph.node for o in n.output}
    float_ops, quantized = collections.Counter(), 0
    for n in graph.node:
        if n.op_type in _QUANTIZED_COMPUTE_OPS:
            quantized += 1
        elif n.op_type in _COMPUTE_OPS:
            if producers.get(n.input[0]) == "DequantizeLinear":
                quantized += 1  # QDQ: the runtime fuses DQ -> op -> Q into an integer kernel
            else:
                float_ops[n.op_type] += 1
    return {
        "node_types": dict(sorted(ops.items())),
        "quantized_compute_nodes": quantized,
        "float_compute_nodes": dict(float_ops),
    }
