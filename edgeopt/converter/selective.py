"""Selective quantization: the same int8 export with some layers kept in float.

One function per kind of file, each taking the Keras layer names to keep float (as explain names
them, see edgeopt.explainer.naming) and returning (file bytes, facts), like the other exporters:

- `tflite_int8`: TFLiteConverter full-integer with TFLite's QuantizationDebugger
  `denylisted_nodes` (the nodes are the calibrated model's op outputs of those layers). Runs
  TensorFlow's calibrator: `fallback: auto` calls it through the converter process
  (`tflite_int8_saved_model`), explain through `quant_debug.run_isolated`.
- `tflite_int8_dynamic`: ai-edge-quantizer on the fp32 .tflite (dynamic-range int8 weights,
  `no_quantize` for the kept layers); TFLiteConverter has no per-layer switch for dynamic range.
- `onnx_int8` / `onnx_int8_dynamic`: onnxruntime.quantization with `nodes_to_exclude`.

Gotchas: a layer that only moves data (pooling, reshape) shares its input's scale and cannot be
kept float on its own; `facts["kept_float"]` lists the nodes that really stayed float.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from ..errors import ConversionError
from ..explainer.naming import layer_of


def nodes_of_layers(names, layers, keras3=False, outputs=None) -> list:
    """The names (tensors or nodes) that belong to any of `layers`; `outputs` maps output names to layers."""
    wanted, outputs = set(layers), outputs or {}
    return [n for n in names if (outputs.get(n) or layer_of(n, keras3)) in wanted]


def tflite_output_layers(model_bytes, output_layers) -> dict:
    """{output tensor name: Keras output layer}, in the serving signature's order."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    sig = interp._get_full_signature_list().get("serving_default", {}).get("outputs", {})
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    indices = list(sig.values()) or [d["index"] for d in interp.get_output_details()]
    if not output_layers or len(output_layers) != len(indices):
        return {}
    return {tensors[i]: layer for i, layer in zip(indices, output_layers)}


# ---- TFLite ------------------------------------------------------------------------------------------
def tflite_int8(converter, calibration, options, keep_float, batch=1, keras3=False,
                output_layers=None) -> tuple[bytes, dict]:
    """Full-integer TFLite of a configured-from-scratch `converter`, with `keep_float` layers left float."""
    import tensorflow as tf

    from .tflite import _representative, configure, find_float_ops

    configure(converter, "int8", options, calibration, batch)
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                         debug_dataset=_representative(calibration, batch))
    calibrated = debugger.calibrated_model
    nodes = nodes_of_layers(calibrated_op_outputs(calibrated), keep_float, keras3,
                            tflite_output_layers(calibrated, output_layers))
    if not nodes:
        raise ConversionError(f"no op of layer(s) {', '.join(keep_float)} found in the calibrated model")
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=nodes, fully_quantize=options.get("io_type", "int8") != "float32")
    data = debugger.get_nondebug_quantized_model()
    return data, {"tool": "tf.lite.experimental.QuantizationDebugger (denylisted_nodes)",
                  "kept_float": [f"{op} ({layer})" for op, layer in find_float_ops(data)]}


def tflite_int8_saved_model(saved_model: str, calibration, options, keep_float, batch=1, keras3=False,
                            output_layers=None) -> tuple[bytes, dict]:
    """`tflite_int8` on a TFLiteConverter over `saved_model`: what the converter process runs (picklable arguments)."""
    import tensorflow as tf

    return tflite_int8(tf.lite.TFLiteConverter.from_saved_model(saved_model), calibration, options, keep_float,
                       batch, keras3, output_layers)


def calibrated_op_outputs(model_bytes) -> list:
    """Output tensor names of every op in a .tflite file: what `denylisted_nodes` matches."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    return [tensors[op["outputs"][0]] for op in interp._get_ops_details() if len(op["outputs"])]


def tflite_int8_dynamic(fp32_path, keep_float, keras3=False, output_layers=None) -> tuple[bytes, dict]:
    """Dynamic-range int8 weights with ai-edge-quantizer, the ops of `keep_float` layers left float."""
    from ai_edge_quantizer import quantizer, recipe

    blob = Path(fp32_path).read_bytes()
    nodes = nodes_of_layers(calibrated_op_outputs(blob), keep_float, keras3, tflite_output_layers(blob, output_layers))
    if not nodes:
        raise ConversionError(f"no op of layer(s) {', '.join(keep_float)} found in {Path(fp32_path).name}")
    skip = [{"regex": re.escape(n), "operation": "*", "algorithm_key": "no_quantize", "op_config": {}}
            for n in nodes]
    try:
        result = quantizer.Quantizer(str(fp32_path), recipe.dynamic_legacy_wi8_afp32() + skip).quantize()
    except Exception as e:  # the quantizer raises plain Exceptions for ops it cannot handle
        raise ConversionError(f"ai-edge-quantizer failed: {type(e).__name__}: {str(e)[:300]}") from None
    return bytes(result.quantized_model), {"tool": "ai-edge-quantizer (dynamic_legacy_wi8_afp32, no_quantize)",
                                          "kept_float": [n.split(";")[0] for n in nodes]}


# ---- ONNX --------------------------------------------------------------------------------------------
def onnx_int8(fp32_path, calibration, options, keep_float, keras3=False, output_layers=None) -> tuple[bytes, dict]:
    """Static int8 (QDQ or QOperator, as `options` say) with the nodes of `keep_float` layers excluded."""
    from . import onnx_quant

    nodes = _onnx_nodes(fp32_path, keep_float, keras3, output_layers, preprocessed=True)
    data, facts = onnx_quant.quantize_static(fp32_path, calibration, options, nodes_to_exclude=nodes)
    return data, {**facts, "tool": "onnxruntime.quantization (nodes_to_exclude)", "kept_float": nodes}


def onnx_int8_dynamic(fp32_path, keep_float, keras3=False, output_layers=None) -> tuple[bytes, dict]:
    from . import onnx_quant

    nodes = _onnx_nodes(fp32_path, keep_float, keras3, output_layers, preprocessed=False)
    data, facts = onnx_quant.quantize_dynamic(fp32_path, nodes_to_exclude=nodes)
    return data, {**facts, "tool": "onnxruntime.quantization (nodes_to_exclude)", "kept_float": nodes}


def _onnx_nodes(fp32_path, layers, keras3, output_layers, preprocessed) -> list:
    """Node names of `layers`, in the graph the quantizer will see (after quant_pre_process if static).

    A node belongs to a layer by its name, or, for the nodes that make the model's outputs, by the
    Keras output layer that output stands for.
    """
    import onnx

    from .onnx_quant import preprocess

    with tempfile.TemporaryDirectory(prefix="edgeopt-selective-") as tmp:
        source = preprocess(Path(fp32_path), Path(tmp) / "preprocessed.onnx")[0] if preprocessed else Path(fp32_path)
        graph = onnx.load(str(source)).graph
    outputs = [o.name for o in graph.output]
    by_output = dict(zip(outputs, output_layers)) if output_layers and len(output_layers) == len(outputs) else {}
    makers = {n.name: by_output[o] for n in graph.node for o in n.output if o in by_output}
    nodes = nodes_of_layers([n.name for n in graph.node if n.name], layers, keras3, makers)
    if not nodes:
        raise ConversionError(f"no node of layer(s) {', '.join(layers)} found in {Path(fp32_path).name}")
    return nodes
