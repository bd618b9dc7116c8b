"""Keras 3 models: the bridge to tf_keras (for pruning) and the pipeline around it, on purpose-built tiny models."""

import numpy as np
import pytest

import edgeopt
from edgeopt.converter.bridge import BridgeError, prove, to_tf_keras


def quiet(**kwargs):
    return {"progress": False, "log": lambda *_: None, **kwargs}


def keras3_sequential():
    import keras

    L = keras.layers
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(),
                             L.Flatten(), L.Dropout(0.2), L.Dense(10, activation="softmax")], name="k3_seq")


def keras3_branches():
    import keras

    L = keras.layers
    inp = keras.Input((16,), name="features")
    a, b = L.Dense(8, activation="relu")(inp), L.Dense(8, activation="tanh")(inp)
    return keras.Model(inp, [L.Dense(3)(L.Concatenate()([a, b])), L.Dense(1, activation="sigmoid")(L.Add()([a, b]))],
                       name="k3_branches")


def keras3_nested():
    import keras

    L = keras.layers
    inner = keras.Sequential([keras.Input((10, 4)), L.LSTM(6, return_sequences=True), L.Bidirectional(L.GRU(5))],
                             name="inner")
    inp = keras.Input((10, 4))
    return keras.Model(inp, L.Dense(2)(inner(L.Rescaling(0.5)(inp))), name="k3_nested")


def _inputs(model, n=6):
    rng = np.random.default_rng(0)
    return [rng.random((n, *t.shape[1:])).astype("float32") for t in model.inputs]


@pytest.mark.parametrize("build", [keras3_sequential, keras3_branches, keras3_nested])
def test_bridge_rebuilds_keras3_models_in_tf_keras_with_equal_outputs(build):
    import tf_keras

    model = build()
    x = _inputs(model)
    copy, facts = to_tf_keras(model, x)
    assert isinstance(copy, tf_keras.Model) and type(model).__module__.startswith("keras.")
    want = model.predict(x if len(x) > 1 else x[0], verbose=0)
    got = copy.predict(x if len(x) > 1 else x[0], verbose=0)
    for w, g in zip(*(o if isinstance(o, list) else [o] for o in (want, got))):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert facts["bridge"] == "keras3->tf_keras" and facts["samples"] == 6


def test_bridge_proof_catches_a_copy_that_differs():
    model = keras3_sequential()
    x = _inputs(model)
    copy, _ = to_tf_keras(model, x)
    dense = copy.layers[-1]
    kernel, bias = dense.get_weights()
    bias[0] += 5.0  # one class only: a shift of every logit would leave the softmax unchanged
    dense.set_weights([kernel, bias])
    with pytest.raises(BridgeError, match=r"disagrees with the Keras 3 model \(max abs error"):
        prove(model, copy, x)


def test_a_layer_tf_keras_lacks_is_named():
    import keras

    model = keras.Sequential([keras.Input((4, 8)), keras.layers.RMSNormalization(name="rms"), keras.layers.Dense(2)])
    with pytest.raises(BridgeError, match=r"layer 'rms' \(RMSNormalization\) cannot be bridged: tf_keras has no"):
        to_tf_keras(model, _inputs(model))


@pytest.fixture(scope="module")
def keras3_digits_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("k3") / "k3_digits.keras"
    keras3_sequential().save(path)
    return path


def test_a_keras3_file_is_pruned_through_the_bridge_and_exported(keras3_digits_file, tmp_path):
    recipe = {"prune": {"target_sparsity": 0.5, "epochs": 1},
              "exports": [{"format": "tflite", "precision": "fp32"}, {"format": "onnx", "precision": "fp32"}]}
    manifest = edgeopt.convert(str(keras3_digits_file), recipe, train="digits", evaluation="digits",
                               out=tmp_path, **quiet())
    assert manifest.source["loader"] == "keras3"
    pruned = manifest.get("k3_digits.pruned50.keras")
    assert pruned.status == "ok" and pruned.facts["bridge"] == "keras3->tf_keras"
    assert pruned.facts["max_abs_error"] <= 1e-4
    assert pruned.sparsity["model"] >= 0.49
    assert [a.status for a in manifest.artifacts] == ["ok", "ok", "ok"], [a.error for a in manifest.artifacts]


def test_an_unbridgeable_keras3_model_still_exports_and_names_the_layer(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.RMSNormalization(name="rms"),
                              keras.layers.Dense(10)], name="k3_rms")
    recipe = {"prune": {"target_sparsity": 0.5, "epochs": 1}, "exports": [{"format": "tflite", "precision": "fp32"}]}
    manifest = edgeopt.convert(model, recipe, train="digits", evaluation="digits", out=tmp_path, **quiet())
    prune = next(a for a in manifest.artifacts if a.stage == "prune")
    assert prune.status == "failed" and "layer 'rms' (RMSNormalization) cannot be bridged" in prune.error
    export = next(a for a in manifest.artifacts if a.format == "tflite")
    assert export.status == "ok" and export.id == "k3_rms.fp32.tflite"  # named as unpruned
