"""Which exports exist, what each needs, and which options it takes. Declared once; read everywhere.

Validation, `edgeopt formats`, and the test matrix (tests/test_capabilities.py fails when a
declared combination has no test) all read this table.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Capability:
    format: str
    precision: str
    needs_calibration: bool
    tool: str
    summary: str
    options: dict = field(default_factory=dict)  # option name -> (allowed values or type, default, help)


_TFLITE_IO = ("int8", "uint8", "float32")
_ORT_CALIBRATION = ("minmax", "entropy", "percentile")
_ORT_QUANT_FORMATS = ("qdq", "qoperator")
_ORT_INT8_VARIANTS = ("auto", "s8", "reduce_range", "u8u8")

CAPABILITIES = [
    Capability("tflite", "fp32", False, "TFLiteConverter", "float32 weights and activations; the reference export"),
    Capability("tflite", "fp16", False, "TFLiteConverter", "float16 weights (half the size), float32 compute on CPU"),
    Capability(
        "tflite", "int8-dynamic", False, "TFLiteConverter",
        "int8 weights, activations quantized on the fly; no calibration data needed",
    ),
    Capability(
        "tflite", "int8", True, "TFLiteConverter",
        "full-integer: int8 weights and activations, calibrated on representative data",
        options={
            "io_type": (_TFLITE_IO, "int8", "dtype of the model's inputs and outputs"),
            "allow_float_ops": (bool, False, "accept ops left in float instead of failing"),
        },
    ),
    Capability(
        "onnx", "fp32", False, "tf2onnx", "float32 ONNX graph",
        options={"opset": (int, 17, "ONNX opset to export")},
    ),
    Capability(
        "onnx", "int8-dynamic", False, "onnxruntime.quantization",
        "int8 weights of MatMul/Gemm, activations quantized at run time",
        options={"opset": (int, 17, "ONNX opset of the fp32 parent")},
    ),
    Capability(
        "onnx", "int8", True, "onnxruntime.quantization",
        "static int8: weights and activations calibrated on representative data",
        options={
            "opset": (int, 17, "ONNX opset of the fp32 parent"),
            "quant_format": (_ORT_QUANT_FORMATS, "qdq", "QDQ (QuantizeLinear/DequantizeLinear pairs) or QOperator"),
            "per_channel": (bool, True, "one scale per output channel of each weight"),
            "calibration_method": (_ORT_CALIBRATION, "minmax", "how activation ranges are chosen"),
            "int8_variant": (_ORT_INT8_VARIANTS, "auto",
                             "weights for the CPUs it will run on: s8 (full range; saturates on x86 without VNNI), "
                             "reduce_range (7-bit), u8u8 (QDQ only); auto: chosen for the recipe's targets, "
                             "else portable"),
        },
    ),
]

FORMATS = sorted({c.format for c in CAPABILITIES})
PRECISIONS = ["fp32", "fp16", "int8-dynamic", "int8"]


def find(format, precision):
    return next((c for c in CAPABILITIES if c.format == format and c.precision == precision), None)


def precisions_for(format):
    return [c.precision for c in CAPABILITIES if c.format == format]


def default_options(cap: Capability) -> dict:
    return {name: spec[1] for name, spec in cap.options.items()}


def validate_options(cap: Capability, options: dict) -> list:
    """Return a list of problems (empty when the options are valid for this export)."""
    problems = []
    where = f"{cap.format}/{cap.precision}"
    for name, value in options.items():
        if name not in cap.options:
            valid = ", ".join(sorted(cap.options)) or "none"
            problems.append(f"{where}: unknown option {name!r} (valid options: {valid})")
            continue
        allowed = cap.options[name][0]
        if isinstance(allowed, tuple):
            if value not in allowed:
                problems.append(f"{where}: {name}={value!r} is not one of {', '.join(map(repr, allowed))}")
        elif allowed is bool and not isinstance(value, bool):
            problems.append(f"{where}: {name} must be true or false, got {value!r}")
        elif allowed is int and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f"{where}: {name} must be an integer, got {value!r}")
    if (cap.format, cap.precision) == ("onnx", "int8"):
        from .converter.onnx_variants import problems as variant_problems

        problems += [f"{where}: {p}" for p in variant_problems(options)]
    return problems
