"""Shared fixtures: a digits CNN trained in seconds, and one full converter run over it.

The converter run is session-scoped: most converter tests read its manifest instead of converting again.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before anything imports TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from edgeopt.fileio import sha256_file  # noqa: E402

FULL_RECIPE = {
    "name": "digits_cnn",
    "prune": {"target_sparsity": 0.5, "epochs": 3},
    "exports": [
        {"format": "tflite", "precision": "fp32"},
        {"format": "tflite", "precision": "fp16"},
        {"format": "tflite", "precision": "int8-dynamic"},
        {"format": "tflite", "precision": "int8"},
        {"format": "tflite", "precision": "int8", "io_type": "float32"},
        {"format": "tflite", "precision": "int8", "io_type": "uint8"},
        {"format": "tflite", "precision": "int8", "allow_float_ops": True},
        {"format": "tflite", "precision": "int8-dynamic", "backend": "ai-edge-quantizer"},
        {"format": "tflite", "precision": "int8-dynamic", "backend": "ai-edge-quantizer", "weight_only": True},
        {"format": "tflite", "precision": "int8", "backend": "ai-edge-quantizer"},
        {"format": "tflite", "precision": "int8", "backend": "ai-edge-quantizer", "activations": "int16",
         "io_type": "int16"},
        {"format": "tflite", "precision": "int8", "backend": "ai-edge-quantizer", "calibration_method": "moving_average",
         "io_type": "float32"},
        {"format": "onnx", "precision": "fp32"},
        {"format": "onnx", "precision": "int8-dynamic"},
        {"format": "onnx", "precision": "int8", "quant_format": "qdq"},
        {"format": "onnx", "precision": "int8", "quant_format": "qoperator", "calibration_method": "entropy"},
        {"format": "onnx", "precision": "int8", "per_channel": False},
        {"format": "onnx", "precision": "int8", "calibration_method": "percentile"},
    ],
}

# The recurrent modes, on a tiny LSTM + GRU classifier (tests/test_recurrent_int8.py converts it once).
RECURRENT_RECIPE = {
    "name": "rnn",
    "data": {"calibration_samples": 64, "evaluation_samples": 200},
    "exports": [
        {"format": "tflite", "precision": "fp32"},
        {"format": "tflite", "precision": "int8"},
        {"format": "tflite", "precision": "int8", "recurrent": "loop"},
        {"format": "tflite", "precision": "int8", "recurrent": "fused"},
        {"format": "tflite", "precision": "int8", "backend": "ai-edge-quantizer", "recurrent": "unroll"},
        {"format": "tflite", "precision": "int8", "backend": "ai-edge-quantizer", "recurrent": "loop"},
        {"format": "tflite", "precision": "int8-dynamic", "backend": "ai-edge-quantizer"},
    ],
}


@pytest.fixture(scope="session")
def digits():
    from edgeopt import data

    return {"train": data.digits("train"), "evaluation": data.digits("evaluation")}


@pytest.fixture(scope="session")
def trained_model(digits):
    from edgeopt.converter.reference_models import digits_cnn, train_classifier

    return train_classifier(digits_cnn(), digits["train"], epochs=6, progress=False)


@pytest.fixture(scope="session")
def model_h5(trained_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits_cnn.h5"
    trained_model.save(path)
    return path


@pytest.fixture(scope="session")
def converted(model_h5, tmp_path_factory):
    """One full converter run: pruned 50%, every export; returns (manifest, out folder, input hash before)."""
    import edgeopt

    before = sha256_file(model_h5), os.stat(model_h5).st_mtime_ns
    out = tmp_path_factory.mktemp("converted")
    manifest = edgeopt.convert(str(model_h5), FULL_RECIPE, train="digits", calibration="digits",
                               evaluation="digits", out=out, progress=False, log=lambda *_: None)
    return manifest, out, before


@pytest.fixture(scope="session")
def aarch64_emulator():
    """The aarch64 emulator, set up (once, into the user's cache) by the same code as `edgeopt target setup`:
    the suite's one download (about 140 MB from Debian's mirror and PyPI, about 290 MB on disk).

    Without it (no Debian tools, no network): a failure in CI, where it must run, and a skip elsewhere.
    """
    from edgeopt.bench.emulator_setup import setup
    from edgeopt.errors import TargetError

    try:
        return setup(log=lambda line: print(line, flush=True))
    except TargetError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the arm64 tests, but the aarch64 emulator cannot be set up: {e}")
        pytest.skip(f"no aarch64 emulator ({e})")
