"""Shared vocabulary: formats, precisions, statuses. Plain str enums so they serialise as themselves."""

from enum import Enum


class Format(str, Enum):
    KERAS = "keras"
    TFLITE = "tflite"
    ONNX = "onnx"

    def __str__(self):
        return self.value


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"  # int8 weights, float activations, no calibration
    INT8 = "int8"  # int8 weights and activations, calibrated

    def __str__(self):
        return self.value


class Status(str, Enum):
    OK = "ok"
    FAILED = "failed"  # produced (or attempted) but a step or a check failed; the reason is recorded
    SKIPPED = "skipped"

    def __str__(self):
        return self.value
