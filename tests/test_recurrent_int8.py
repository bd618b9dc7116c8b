"""Recurrent models reach full int8: unrolled (the default for int8) or with fused LSTMs; loops, and
ai-edge-quantizer's static recipes, fail with their named reasons. One conversion of a tiny LSTM + GRU."""

import collections

import numpy as np
import pytest

import edgeopt
from edgeopt.bench.device.runtimes import open_model
from edgeopt.converter.tflite import find_float_ops

from .conftest import RECURRENT_RECIPE


def rows(role):
    from edgeopt import data

    ds = data.digits(role)
    return data.Dataset([ds.x[0].reshape(-1, 8, 8)], ds.y, f"{ds.source}:rows")


@pytest.fixture(scope="module")
def rnn_converted(tmp_path_factory):
    import tf_keras as keras

    from edgeopt.converter.reference_models import train_classifier

    L = keras.layers
    keras.utils.set_random_seed(0)
    # Named layers: Keras numbers unnamed ones per session (lstm_3 after other tests built LSTMs).
    model = keras.Sequential([keras.Input((8, 8)), L.LSTM(16, return_sequences=True, name="lstm"), L.GRU(12, name="gru"),
                              L.Dense(10, name="logits")], name="rnn")
    train_classifier(model, rows("train"), epochs=4, progress=False)
    out = tmp_path_factory.mktemp("rnn")
    manifest = edgeopt.convert(model, RECURRENT_RECIPE, calibration=rows("calibration"), evaluation=rows("evaluation"),
                               out=out, progress=False, log=lambda *_: None)
    return manifest, out


def ops_of(out, art):
    return collections.Counter(open_model(str(out / art.path), xnnpack=False).ops())


def test_int8_of_a_recurrent_model_is_full_integer_by_unrolling(rnn_converted):
    manifest, out = rnn_converted
    art = manifest.get("rnn.int8.tflite")
    assert art.ok, art.error
    assert art.facts["recurrent"] == "unroll" and art.facts["unrolled_layers"] == ["lstm (LSTM)", "gru (GRU)"]
    assert art.facts["rebuilt_max_abs_error"] < 1e-5 and "WHILE" in art.facts["recurrent_why"]
    ops = ops_of(out, art)
    assert "WHILE" not in ops and ops["FULLY_CONNECTED"] >= 16  # two per step and layer
    assert art.inputs[0]["dtype"] == "int8" and find_float_ops((out / art.path).read_bytes()) == []
    assert art.check["top1_agreement"] >= 0.93


def test_int8_as_loops_fails_with_the_calibrator_crash_and_names_the_way_out(rnn_converted):
    manifest, _ = rnn_converted
    art = manifest.get("rnn.int8.loop.tflite")
    assert art.status == "failed" and "SIGSEGV" in art.error
    assert "lstm (LSTM), gru (GRU)" in art.error and "recurrent: unroll" in art.error


def test_fused_mode_keeps_the_lstm_as_one_int8_op_and_unrolls_the_gru(rnn_converted):
    manifest, out = rnn_converted
    art = manifest.get("rnn.int8.fused-lstm.tflite")
    assert art.ok, art.error
    assert art.facts["fused_lstms"] == ["lstm (LSTM)"] and art.facts["unrolled_layers"] == ["gru (GRU)"]
    ops = ops_of(out, art)
    assert ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1 and "WHILE" not in ops
    assert find_float_ops((out / art.path).read_bytes()) == []
    assert art.size_bytes < manifest.get("rnn.int8.tflite").size_bytes  # one op instead of 8 steps of ops


def test_float_exports_keep_loops_and_the_aeq_parent_is_unrolled(rnn_converted):
    manifest, out = rnn_converted
    auto = manifest.get("rnn.fp32.tflite")
    assert auto.ok and auto.facts["recurrent"] == "loop" and ops_of(out, auto)["WHILE"] == 2
    unrolled = manifest.get("rnn.fp32.unrolled.tflite")  # made for the ai-edge-quantizer pass, not listed
    assert unrolled.ok and "WHILE" not in ops_of(out, unrolled)


def test_aeq_static_int8_of_loops_names_the_loops_and_the_way_out(rnn_converted):
    manifest, _ = rnn_converted
    art = manifest.get("rnn.int8.aeq.loop.tflite")
    assert art.parent == "rnn.fp32.tflite" and art.status == "failed"
    assert "WHILE loops" in art.error and "recurrent: unroll" in art.error


def test_aeq_static_int8_of_the_unrolled_model_names_the_mixed_op_litert_refuses(rnn_converted):
    """ai-edge-quantizer 0.10 leaves a SPLIT output no op reads in float32; XNNPACK refuses that SPLIT."""
    manifest, _ = rnn_converted
    art = manifest.get("rnn.int8.aeq.unrolled.tflite")
    assert art.parent == "rnn.fp32.unrolled.tflite" and art.status == "failed"
    assert "LiteRT cannot load" in art.error and "SPLIT (lstm)" in art.error


def test_aeq_dynamic_quantizes_the_loop_model(rnn_converted):
    manifest, _ = rnn_converted
    art = manifest.get("rnn.int8-dynamic.aeq.tflite")
    assert art.ok and art.parent == "rnn.fp32.tflite" and art.facts["recurrent"] == "loop", art.error


def test_unrolling_needs_a_fixed_sequence_length(tmp_path):
    import tf_keras as keras

    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)], name="free")
    manifest = edgeopt.convert(model, {"exports": [{"format": "tflite", "precision": "int8"}]},
                               calibration="synthetic", out=tmp_path, progress=False, log=lambda *_: None)
    art = manifest.get("free.int8.tflite")
    assert art.status == "failed" and "sequence length is not fixed" in art.error and "int8-dynamic" in art.error


def test_a_recurrent_option_on_a_model_without_recurrent_layers_is_refused(model_h5, tmp_path):
    recipe = {"exports": [{"format": "tflite", "precision": "int8", "recurrent": "unroll"}],
              "data": {"calibration_samples": 16}}
    manifest = edgeopt.convert(str(model_h5), recipe, calibration="digits", out=tmp_path, progress=False,
                               log=lambda *_: None)
    art = manifest.artifacts[0]
    assert art.status == "failed" and "this model has none; drop the option" in art.error


def test_keras3_recurrent_models_unroll_and_fuse_through_the_bridge(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((6, 3)), keras.layers.LSTM(8), keras.layers.Dense(4, activation="softmax")],
                             name="k3rnn")
    exports = [{"format": "tflite", "precision": "int8"}, {"format": "tflite", "precision": "int8", "recurrent": "fused"}]
    manifest = edgeopt.convert(model, {"exports": exports, "data": {"calibration_samples": 32}},
                               calibration="synthetic", out=tmp_path, progress=False, log=lambda *_: None)
    unrolled, fused = manifest.get("k3rnn.int8.tflite"), manifest.get("k3rnn.int8.fused-lstm.tflite")
    assert unrolled.ok and unrolled.facts["recurrent"] == "unroll", unrolled.error
    assert "WHILE" not in ops_of(tmp_path, unrolled)
    assert fused.ok and fused.facts["bridge"] == "keras3->tf_keras", fused.error
    assert ops_of(tmp_path, fused)["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1


def test_a_fused_lstm_file_starts_every_inference_from_a_zero_state(rnn_converted):
    """UNIDIRECTIONAL_SEQUENCE_LSTM keeps its state in variable tensors; the runtime resets them per inference."""
    manifest, out = rnn_converted
    model = open_model(str(out / manifest.get("rnn.int8.fused-lstm.tflite").path))
    assert model.stateful
    x = rows("evaluation").x[0][:3]
    alone = model.predict([x[2:3]])[0]
    after_others = model.predict([x])[0][2:3]
    np.testing.assert_array_equal(alone, after_others)
