"""What the suite does with each reference model: how it is built, its data, its check tolerances, its timing.

Builders live in `models/` (and edgeopt's own digits CNN); this file only says how the suite uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgeopt import data
from edgeopt.converter.reference_models import digits_cnn, train_classifier
from models import digits_as, digits_conv1d, digits_mlp, mobilenet_v2, mobilenet_v2_digits


# LiteRT's own quantizer beside TFLiteConverter's: the same int8 and int8-dynamic, and its mixed recipes
# (int16 activations with int8 weights; int8 weights dequantized before float compute).
AEQ_EXPORTS = [
    {"format": "tflite", "precision": "int8", "backend": "ai-edge-quantizer"},
    {"format": "tflite", "precision": "int8-dynamic", "backend": "ai-edge-quantizer"},
    {"format": "tflite", "precision": "int8", "backend": "ai-edge-quantizer", "activations": "int16", "io_type": "int16"},
    {"format": "tflite", "precision": "int8-dynamic", "backend": "ai-edge-quantizer", "weight_only": True},
]

# Microsecond models give tens of thousands of runs in half a second; MobileNetV2 keeps the harness default.
SMALL_MODEL_TIMING = {"min_seconds": 0.5}
QUICK_TIMING = {"warmup_runs": 3, "min_runs": 20, "min_seconds": 0.05}


@dataclass(frozen=True)
class SuiteModel:
    name: str
    build: Callable[[bool], object]  # quick -> a tf_keras model, trained where it can be
    calibration: Callable[[bool], data.Dataset]
    evaluation: Callable[[bool], data.Dataset]
    timing: dict = field(default_factory=dict)
    tolerances: dict = field(default_factory=dict)  # recipe check.tolerances overrides
    note: str = ""

    def saved(self, work, quick: bool):
        """The model built (seeded) and saved once under `work`/source; later runs reuse the file."""
        from edgeopt.converter.keras_io import tf_keras

        source = work / "source" / f"{self.name}.h5"
        if not source.exists():
            tf_keras().utils.set_random_seed(0)
            source.parent.mkdir(parents=True, exist_ok=True)
            self.build(quick).save(source)
        return source


def _trained(builder, layout, epochs=(4, 15), **training):
    """build(quick): `builder()` trained on the digits' training split for epochs[quick is False]."""
    def build(quick):
        return train_classifier(builder(), digits_as(layout, "train"), epochs=epochs[0] if quick else epochs[1],
                                progress=False, **training)

    return build


def _digits(layout, role):
    def load(quick):
        return digits_as(layout, role)

    return load


def _uniform_images(n_full, n_quick, seed):
    """MobileNetV2's input range is [-1, 1]; without a data set, uniform noise in it is the honest stand-in."""
    def load(quick):
        n = n_quick if quick else n_full
        x = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 224, 224, 3)).astype(np.float32)
        return data.Dataset([x], None, f"synthetic:uniform[-1,1):seed{seed}")

    return load


# A random MobileNetV2's logits on noise lie close together, so a small rounding error reorders its
# top-1: these bounds (what one run measured, with a margin) keep its fp16 and int8 files, to be timed,
# while every figure stays in the manifest and the reports. The other tolerances keep their defaults.
MOBILENET_TOLERANCES = {
    "fp16": {"max_abs_error": 0.05, "min_top1_agreement": 0.9},
    "int8-dynamic": {"min_cosine": 0.98, "min_top1_agreement": 0.5},
    "int8": {"min_cosine": 0.95, "min_top1_agreement": 0.5},
}

SUITE = {
    m.name: m
    for m in [
        SuiteModel("digits_cnn", _trained(digits_cnn, "image"), _digits("image", "calibration"),
                   _digits("image", "evaluation"), SMALL_MODEL_TIMING,
                   note="two-conv CNN on 8x8x1 digits, trained here"),
        SuiteModel("digits_mlp", _trained(digits_mlp, "flat"), _digits("flat", "calibration"),
                   _digits("flat", "evaluation"), SMALL_MODEL_TIMING,
                   note="dense MLP on the 64 flattened pixels, trained here"),
        SuiteModel("digits_conv1d", _trained(digits_conv1d, "rows"), _digits("rows", "calibration"),
                   _digits("rows", "evaluation"), SMALL_MODEL_TIMING,
                   note="Conv1D over the 8 rows of a digit as 8 timesteps x 8 features, trained here"),
        SuiteModel("mobilenet_v2", lambda quick: mobilenet_v2(), _uniform_images(64, 8, seed=1), _uniform_images(32, 4, seed=2),
                   tolerances=MOBILENET_TOLERANCES,
                   note="MobileNetV2 224x224x3 with random weights (untrained: there is no accuracy; "
                        "agreement is with the same random Keras model), calibrated and checked on uniform noise"),
    ]
}


def _first(n, layout, role):
    """The first `n` samples of a digits split: 224x224 RGB digits weigh 600 KB each."""
    def load(quick):
        ds = digits_as(layout, role)
        return data.Dataset([ds.x[0][:n]], ds.y[:n], f"{ds.source}[:{n}]")

    return load


# Trained stand-ins for networks whose real weights would need a download: the search benchmark's MobileNetV2
# (benchmarks/search.py), where int8 files must be judged on a network whose outputs mean something. Not in
# SUITE: run.py and the other suite scripts keep their models and their committed results.
TRAINED = {
    m.name: m
    for m in [
        SuiteModel("mobilenet_v2_digits", _trained(mobilenet_v2_digits, "rgb224", epochs=(1, 5), learning_rate=1e-3),
                   _first(500, "rgb224", "calibration"), _first(200, "rgb224", "evaluation"),
                   note="MobileNetV2 224x224x3 (alpha 1.0, 10 classes) trained here on the digits upscaled to "
                        "224x224 RGB (each pixel a 28x28 block); checked on 200 held-out digits"),
    ]
}
