"""ONNX int8 variants, and which one to make for which CPUs (the export option `int8_variant`).

- `s8`: full-range int8 weights (onnxruntime's default). The most precise; saturates on x86 without
  VNNI, where onnxruntime adds pairs of u8 x s8 products in int16 (see bench/kernels.py).
- `reduce_range`: 7-bit weights. Safe on every CPU, in both QDQ and QOperator layouts.
- `u8u8`: uint8 weights and activations; onnxruntime's u8u8 kernels do not saturate (measured). QDQ only:
  onnxruntime's QOperator quantizer writes int8 weights for QLinearConv even when asked for uint8.
- `auto` (the default): `s8` when every named target adds int8 products in int32 (VNNI x86, ARM);
  otherwise, and when no target is named, the portable variant of the layout (PORTABLE).

TensorFlow-free. The choice and its reason go into the artifact's facts (`int8_variant`), so that
`bench` can warn when a file runs on a CPU it was not made for.
Example:
    choose({"int8_variant": "auto", "quant_format": "qdq"}, ["x86-64-avx2"])["variant"]   # "u8u8"
"""

from __future__ import annotations

from ..bench import kernels

SAFE_ON = {
    "s8": {kernels.X86_VNNI, kernels.ARM},
    "reduce_range": {kernels.X86_VNNI, kernels.X86_AVX2, kernels.ARM},
    "u8u8": {kernels.X86_VNNI, kernels.X86_AVX2, kernels.ARM},
}
# Chosen on the accuracy each costs where s8 is safe, measured on VNNI x86, emulated AVX2 and emulated
# aarch64: benchmarks/results/onnx_int8_variants.md (benchmarks/onnx_int8_variants.py).
PORTABLE = {"qdq": "u8u8", "qoperator": "reduce_range"}
CLASS_LABELS = {kernels.X86_VNNI: "VNNI x86", kernels.X86_AVX2: "AVX2 x86", kernels.ARM: "ARM"}
COST = "benchmarks/results/onnx_int8_variants.md"


def ort_arguments(variant: str, quant_format: str) -> dict:
    """onnxruntime.quantization arguments (as names) for a concrete variant."""
    from onnxruntime.quantization import QuantType

    # QOperator with uint8 activations is onnxruntime's x86 fast path; QDQ keeps symmetric int8 activations.
    activation = QuantType.QInt8 if quant_format == "qdq" else QuantType.QUInt8
    if variant == "u8u8":
        return {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QUInt8, "reduce_range": False}
    return {"activation_type": activation, "weight_type": QuantType.QInt8, "reduce_range": variant == "reduce_range"}


def problems(options: dict) -> list[str]:
    if options.get("int8_variant") == "u8u8" and options.get("quant_format") == "qoperator":
        return ["int8_variant=u8u8 needs quant_format=qdq: onnxruntime's QOperator quantizer writes int8 weights "
                "for QLinearConv even when asked for uint8 (use int8_variant=reduce_range with qoperator)"]
    return []


def target_class(name: str) -> str:
    """The CPU class a conversion target names: `local` is this machine; ssh:// boards are unknown here."""
    if name == "local":
        from ..bench.device import sysinfo

        return kernels.cpu_class(sysinfo.cpu())
    return kernels.NAMED_CPUS.get(name, kernels.UNKNOWN)


def choose(options: dict, targets=()) -> dict:
    """The concrete variant for these export options and targets, with the reason, for the manifest."""
    asked, layout = options.get("int8_variant", "auto"), options.get("quant_format", "qdq")
    classes = {t: target_class(t) for t in targets}
    made_for = list(targets) or ["any CPU"]
    if asked != "auto":
        unsafe = [t for t, c in classes.items() if c not in SAFE_ON[asked]]
        why = f"asked for {asked}" + (f"; at risk on {', '.join(unsafe)}" if unsafe else "")
        made_for = list(targets) or _safe_on(asked)  # no target named: the CPUs that variant is safe on
        return {"asked": asked, "variant": asked, "made_for": made_for, "cpus": classes, "why": why}
    portable = PORTABLE[layout]
    if not classes:
        why = (f"no target named: {portable}, safe on x86 with or without VNNI and on ARM (what it costs where "
               f"s8 would be safe: {COST})")
        return {"asked": asked, "variant": portable, "made_for": made_for, "cpus": {}, "why": why}
    unknown = [t for t, c in classes.items() if c in (kernels.UNKNOWN, kernels.X86_OLD)]
    at_risk = [t for t, c in classes.items() if c == kernels.X86_AVX2]
    if unknown:
        variant, why = portable, f"the CPU of {', '.join(unknown)} is not known at conversion time: {portable}, the portable variant"
    elif at_risk:
        variant, why = portable, (f"{', '.join(at_risk)}: x86 without VNNI, where s8 weights saturate "
                                  f"onnxruntime's u8s8 kernels; {portable} does not")
    else:
        variant = "s8"
        why = "every target adds int8 products in int32 (" + ", ".join(f"{t}: {c}" for t, c in classes.items()) + \
              "): full-range s8 weights, the most precise"
    return {"asked": asked, "variant": variant, "made_for": made_for, "cpus": classes, "why": why}


def _safe_on(variant) -> list[str]:
    safe = SAFE_ON[variant]
    return ["any CPU"] if safe >= set(CLASS_LABELS) else [label for c, label in CLASS_LABELS.items() if c in safe]
