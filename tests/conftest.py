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
        # The ONNX int8 variants (the defaults above are `auto`: portable, as no target is named).
        {"format": "onnx", "precision": "int8", "int8_variant": "s8"},
        {"format": "onnx", "precision": "int8", "quant_format": "qoperator", "int8_variant": "s8"},
        {"format": "onnx", "precision": "int8", "int8_variant": "reduce_range"},
        {"format": "onnx", "precision": "int8", "int8_variant": "u8u8"},
        {"format": "onnx", "precision": "int8", "calibration_method": "percentile"},
    ],
}

# The recurrent modes, on a tiny LSTM + GRU classifier (tests/test_recurrent_int8.py converts it once).
RECURRENT_RECIPE = {
    "name": "rnn",
    "data": {"calibration_samples": 64, "evaluation_samples": 200},
    # A 4-epoch toy RNN: its int8 file agreed with it on 92.5% of 200 rows in one run, 93% or more in others, so
    # the default 93% floor would make these tests fail by chance; what they pin is how the loops are exported.
    "check": {"tolerances": {"int8": {"min_top1_agreement": 0.9}}},
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


@pytest.fixture(scope="session")
def x86_avx2_emulator():
    """The x86-64-avx2 emulator (an emulated Haswell), set up once into the user's cache like `edgeopt target setup`.

    Setup itself proves that onnxruntime takes its saturating AVX2 int8 kernels under it. Without it (no
    Debian tools, no network): a failure in CI, where it must run, and a skip elsewhere.
    """
    from edgeopt.bench import x86_emulator
    from edgeopt.errors import TargetError

    try:
        return x86_emulator.setup(log=lambda line: print(line, flush=True))
    except TargetError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the x86-64-avx2 tests, but its emulator cannot be set up: {e}")
        pytest.skip(f"no x86-64-avx2 emulator ({e})")


BAD_LAYER = "bad"  # the layer of bad_layer_h5 that int8 breaks


@pytest.fixture(scope="session")
def bad_layer_h5(tmp_path_factory):
    """A digits MLP whose layer `bad` has one channel spanning 1000x the others (int8 crushes the rest)."""
    from edgeopt import data
    from edgeopt.converter.keras_io import tf_keras
    from edgeopt.converter.reference_models import train_classifier

    keras = tf_keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"), keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(32, activation="relu", name="dense_a"),
        keras.layers.Dense(32, activation="relu", name=BAD_LAYER),
        keras.layers.Dense(10, name="logits")], name="bad_channel")
    model = train_classifier(model, data.digits("train"), epochs=8, progress=False)
    # ReLU is positively homogeneous: channel 0 of `bad` x1000, its weights into `logits` /1000 -> same function.
    w, b = model.get_layer(BAD_LAYER).get_weights()
    w[:, 0] *= 1000.0
    b[0] *= 1000.0
    model.get_layer(BAD_LAYER).set_weights([w, b])
    w, b = model.get_layer("logits").get_weights()
    w[0, :] /= 1000.0
    model.get_layer("logits").set_weights([w, b])
    path = tmp_path_factory.mktemp("bad") / "bad_channel.h5"
    model.save(path)
    return path
