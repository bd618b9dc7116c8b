"""From a tensor or node name in a .tflite / .onnx graph back to the Keras layer the user knows.

Both exporters name tensors after the TensorFlow name scope of the op that made them:
'digits_cnn/conv1/Relu;digits_cnn/conv1/BiasAdd' (TFLite joins fused ops with ';'),
'digits_cnn/conv1/Relu:0' (tf2onnx), and onnxruntime's quantizer adds suffixes
('_QuantizeLinear_Output', '_quantized'). Keras 3 models are traced once more on export, so every
scope carries one extra '_N' (layer 'conv1d' -> scope 'conv1d_1', 'conv1d_1' -> 'conv1d_1_2').

TensorFlow-free.
"""

from __future__ import annotations

import re

# onnxruntime.quantization's tensor suffixes (quant_utils: QUANT_INPUT_SUFFIX, DEQUANT_OUTPUT_SUFFIX,
# TENSOR_NAME_QUANT_SUFFIX), TFLite's int8 I/O suffix, and ORT's dynamic-quantization outputs.
_SUFFIXES = ("_DequantizeLinear_Output_1", "_DequantizeLinear_Output", "_QuantizeLinear_Output",
             "_QuantizeLinear_Input", "_quantized", "_output_quantized", "_int8", "_uint8",
             "_MatMul_output_quantized", "_output_0")
_TRACE_SUFFIX = re.compile(r"_\d+$")


def strip_suffixes(name: str) -> str:
    """The float tensor a quantized tensor stands for: 'x:0_QuantizeLinear_Output' -> 'x:0'."""
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name, changed = name[: -len(suffix)], True
    return name


def layer_of(tensor_name: str, keras3: bool = False) -> str:
    """'model/conv1/Relu;model/conv1/BiasAdd' -> 'conv1'; 'logits' -> 'logits'.

    `keras3`: undo the extra '_N' a Keras 3 export adds to every scope.
    """
    first = strip_suffixes(tensor_name.split(";")[0])
    parts = first.split("/")
    layer = parts[1] if len(parts) > 2 else parts[0]
    layer = layer.split(":")[0]
    if keras3 and len(parts) > 2:
        layer = _TRACE_SUFFIX.sub("", layer)
    return layer
