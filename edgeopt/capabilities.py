"""Which exports exist, what each needs, and which options it takes. Declared once; read everywhere.

Validation, `edgeopt formats`, and the test matrix (tests/test_capabilities.py fails when a
declared combination has no test) all read this table.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    """An option value that needs another option to hold one of some values (checked with the defaults filled in)."""

    when: tuple  # (option, value)
    needs: tuple  # (option, allowed values)
    why: str


@dataclass(frozen=True)
class Capability:
    format: str
    precision: str
    needs_calibration: bool
    tool: str
    summary: str
    options: dict = field(default_factory=dict)  # option name -> (allowed values or type, default, help)
    # How it is made from a quantization-aware (QAT) model, whose fake-quant nodes hold learned int8
    # ranges; None: not offered after QAT (the file would be int8 anyway, or quantized twice).
    after_qat: str | None = None
    rules: tuple = ()  # Rule: combinations of options that the tools cannot make


_TFLITE_IO = ("int8", "uint8", "int16", "float32")
_TFLITE_BACKENDS = ("tflite-converter", "ai-edge-quantizer")
_AEQ = "ai-edge-quantizer"
_RECURRENT = ("auto", "loop", "unroll", "fused")
_RECURRENT_OPTION = {
    "recurrent": (_RECURRENT, "auto", "how LSTM/GRU layers are exported: loop (TFLite WHILE loops), unroll (a copy with "
                  "unroll=True: one op chain per time step; fixed-length sequences only), fused (tf_keras LSTMs as "
                  "UNIDIRECTIONAL_SEQUENCE_LSTM, other recurrent layers unrolled); auto: unroll for int8, else loop"),
}
_BACKEND_OPTION = {
    "backend": (_TFLITE_BACKENDS, "tflite-converter", "who quantizes: TFLiteConverter while converting, or "
                "ai-edge-quantizer (LiteRT's quantizer) as a pass over the fp32 .tflite file"),
}
_ORT_CALIBRATION = ("minmax", "entropy", "percentile")
_ORT_QUANT_FORMATS = ("qdq", "qoperator")
_ORT_INT8_VARIANTS = ("auto", "s8", "reduce_range", "u8u8")
_FALLBACK = (("none", "auto"), "none",
             "auto: when the file fails its check, keep the fewest layers in float (chosen by per-layer error) "
             "until it passes, and record which and why")

CAPABILITIES = [
    Capability("tflite", "fp32", False, "TFLiteConverter", "float32 weights and activations; the reference export",
               options=dict(_RECURRENT_OPTION)),
    Capability("tflite", "fp16", False, "TFLiteConverter", "float16 weights (half the size), float32 compute on CPU"),
    Capability(
        "tflite", "int8-dynamic", False, "TFLiteConverter or ai-edge-quantizer",
        "int8 weights, activations quantized on the fly; no calibration data needed",
        options={
            **_BACKEND_OPTION,
            "weight_only": (bool, False, "ai-edge-quantizer: int8 weights dequantized to float before each op "
                            "(float compute, no activation quantization)"),
            **_RECURRENT_OPTION,
        },
        rules=(Rule(("weight_only", True), ("backend", (_AEQ,)), "TFLiteConverter has no weight-only int8 mode"),),
    ),
    Capability(
        "tflite", "int8", True, "TFLiteConverter or ai-edge-quantizer",
        "full-integer: int8 weights and activations, calibrated on representative data",
        options={
            **_BACKEND_OPTION,
            "io_type": (_TFLITE_IO, "int8", "dtype of the model's inputs and outputs"),
            "allow_float_ops": (bool, False, "accept ops left in float instead of failing"),
            "fallback": _FALLBACK,
            "activations": (("int8", "int16"), "int8", "ai-edge-quantizer: int16 activations with int8 weights "
                            "(16x8; LiteRT runs it on reference kernels, far slower)"),
            "calibration_method": (("minmax", "moving_average"), "minmax", "ai-edge-quantizer: activation ranges from "
                                   "the min/max over all samples, or its own default, a moving average of per-sample "
                                   "min/max (narrower ranges that clip outliers)"),
            **_RECURRENT_OPTION,
        },
        after_qat="TFLiteConverter with the ranges QAT learned (calibration data is not used)",
        rules=(
            Rule(("activations", "int16"), ("backend", (_AEQ,)), "int16 activations are made by ai-edge-quantizer"),
            Rule(("calibration_method", "moving_average"), ("backend", (_AEQ,)),
                 "TFLiteConverter's calibrator always takes min/max"),
            Rule(("fallback", "auto"), ("backend", ("tflite-converter",)),
                 "fallback: auto re-exports through TFLiteConverter's quantization debugger"),
            Rule(("activations", "int16"), ("io_type", ("int16", "float32")), "16x8 files take int16 or float32 I/O"),
            Rule(("activations", "int8"), ("io_type", ("int8", "uint8", "float32")), "int8 files take int8, uint8 or "
                 "float32 I/O"),
            Rule(("backend", _AEQ), ("io_type", ("int8", "int16", "float32")), "ai-edge-quantizer writes no uint8 I/O"),
        ),
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
            "fallback": _FALLBACK,
        },
        after_qat="TFLiteConverter (QAT's ranges) then tf2onnx's TFLite frontend: QDQ nodes, int8 weights; only "
        "opset applies",
    ),
]

FORMATS = sorted({c.format for c in CAPABILITIES})
PRECISIONS = ["fp32", "fp16", "int8-dynamic", "int8"]


def find(format, precision):
    return next((c for c in CAPABILITIES if c.format == format and c.precision == precision), None)


def precisions_for(format):
    return [c.precision for c in CAPABILITIES if c.format == format]


def after_qat() -> list:
    return [c for c in CAPABILITIES if c.after_qat]


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
    return problems or _broken_rules(cap, {**default_options(cap), **options})


def _broken_rules(cap: Capability, options: dict) -> list:
    problems = []
    for rule in cap.rules:
        (name, value), (needed, allowed) = rule.when, rule.needs
        if options.get(name) == value and options.get(needed) not in allowed:
            wanted = " or ".join(map(repr, allowed))
            problems.append(f"{cap.format}/{cap.precision}: {name}={value!r} needs {needed}={wanted}, got "
                            f"{options.get(needed)!r} ({rule.why}): set {needed}: {allowed[0]}")
    return problems
