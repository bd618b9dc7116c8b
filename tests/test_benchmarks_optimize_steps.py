"""The premise of benchmarks/optimize_steps.py: its outlier channel leaves the float model's function as it was
and costs post-training int8 accuracy. (The QAT/distillation figures live in benchmarks/results.)"""

import sys
from pathlib import Path

import numpy as np

import edgeopt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_the_outlier_channel_keeps_the_float_function_and_costs_ptq_accuracy(trained_model, tmp_path):
    import tf_keras as keras
    from optimize_steps import with_outlier_channel

    from edgeopt import data

    model = keras.models.clone_model(trained_model)
    model.set_weights(trained_model.get_weights())
    x = data.digits("evaluation").x[0]
    before = model.predict(x, verbose=0)
    with_outlier_channel(model)
    assert np.abs(model.predict(x, verbose=0) - before).max() <= 1e-4 * np.abs(before).max()
    manifest = edgeopt.convert(model, {"exports": [{"format": "tflite", "precision": "int8"}]}, calibration="digits",
                               evaluation="digits", out=tmp_path, progress=False, log=lambda *_: None)
    check = manifest.artifacts[0].check
    assert check["reference_accuracy"] - check["accuracy"] > 0.01
