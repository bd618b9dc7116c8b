"""Artifact file names that say what they are: digits_cnn.pruned50.int8.tflite, digits_cnn.pruned80.qat.int8.tflite."""

import re

from . import capabilities

# Short tags for options that differ from an export's defaults, so distinct variants get distinct names.
_TAGS = {
    "quant_format": lambda v: v,
    "calibration_method": lambda v: v.replace("_", "-"),
    "per_channel": lambda v: "per-channel" if v else "per-tensor",
    "io_type": lambda v: f"{v}-io",
    "allow_float_ops": lambda v: "mixed" if v else "full-int",
    "opset": lambda v: f"opset{v}",
    "int8_variant": lambda v: v.replace("_", "-"),
    "fallback": lambda v: f"fallback-{v}",
    "backend": lambda v: {"ai-edge-quantizer": "aeq"}.get(v, v),
    "weight_only": lambda v: "weight-only" if v else "dynamic",
    "activations": lambda v: {"int16": "16x8"}.get(v, f"{v}-act"),
    "recurrent": lambda v: {"unroll": "unrolled", "fused": "fused-lstm"}.get(v, v),
}


def stem(model_name: str) -> str:
    """The model's part of every file name; each optimize step adds its tag ('.pruned50', '.qat')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", model_name).strip("_") or "model"


def export_name(stem: str, fmt: str, precision: str, options: dict) -> str:
    cap = capabilities.find(fmt, precision)
    defaults = capabilities.default_options(cap) if cap else {}
    tags = [_TAGS[k](v) for k, v in sorted(options.items()) if k in _TAGS and defaults.get(k) != v]
    return ".".join([stem, precision, *tags, fmt])
