"""Each bad input gets a clear error naming what was wrong and how to fix it; nothing else is lost."""

import subprocess
import sys
import zipfile

import numpy as np
import pytest

import edgeopt
from edgeopt.errors import ConversionError, DataError, ModelLoadError, OutputError, RecipeError

FP32_ONLY = {"exports": [{"format": "tflite", "precision": "fp32"}]}
INT8 = {"exports": [{"format": "tflite", "precision": "int8"}]}


def quiet(**kwargs):
    return {"progress": False, "log": lambda *_: None, **kwargs}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, model_h5, trained_model):
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.h5").write_text("this is not a model")
    data = model_h5.read_bytes()
    (d / "truncated.h5").write_bytes(data[: len(data) // 2])
    trained_model.save_weights(d / "weights_only.h5")
    keras_zip = d / "good.keras"
    trained_model.save(keras_zip)
    blob = keras_zip.read_bytes()
    (d / "corrupt.keras").write_bytes(blob[: len(blob) // 3])
    with zipfile.ZipFile(d / "other.keras", "w") as z:
        z.writestr("readme.txt", "a zip, not a model")
    return d


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory):
    """Files saved by Keras 3 (in a clean subprocess, as a Keras 3 user would have made them)."""
    d = tmp_path_factory.mktemp("keras3")
    script = (
        "import os; os.environ['TF_USE_LEGACY_KERAS']='0'\n"
        "import keras, sys\n"
        "m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])\n"
        "m.save(sys.argv[1] + '/k3.keras'); m.save(sys.argv[1] + '/k3.h5')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(d)], check=True, capture_output=True)
    return d


@pytest.mark.parametrize("name,pattern", [
    ("missing.h5", r"does not exist"),
    ("notes.h5", r"is not a Keras model: it is neither HDF5"),
    ("truncated.h5", r"damaged HDF5 file \(truncated or corrupt"),
    ("weights_only.h5", r"without a model architecture.*weights-only.*model.save"),
    ("corrupt.keras", r"damaged .keras archive"),
    ("other.keras", r"zip archive but not a .keras model"),
])
def test_unloadable_model_files_are_named_with_the_fix(bad_files, name, pattern):
    with pytest.raises(ModelLoadError, match=pattern):
        edgeopt.convert(str(bad_files / name), FP32_ONLY, out=bad_files / "out", **quiet())


@pytest.mark.parametrize("name", ["k3.keras", "k3.h5"])
def test_keras3_files_are_opened_with_keras3_and_exported(keras3_files, name):
    recipe = {"exports": [{"format": "tflite", "precision": "fp32"}, {"format": "onnx", "precision": "fp32"}]}
    manifest = edgeopt.convert(str(keras3_files / name), recipe, out=keras3_files / f"out-{name}", **quiet())
    assert manifest.source["loader"] == "keras3" and manifest.source["saved_keras_version"].startswith("3.")
    assert [a.status for a in manifest.artifacts] == ["ok", "ok"], [a.error for a in manifest.artifacts]


def test_pruning_a_subclassed_model_is_refused_before_any_work(tmp_path):
    import tf_keras as keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(10)

        def call(self, x):
            return self.dense(keras.layers.Flatten()(x))

    net = Net()
    net(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(ConversionError, match=r"subclassed model.*Functional.*drop `prune`"):
        edgeopt.convert(net, {"prune": {"target_sparsity": 0.5}, **FP32_ONLY}, train="digits", out=tmp_path, **quiet())
    assert not list(tmp_path.iterdir())


def test_int8_without_calibration_data_says_what_to_pass(model_h5, tmp_path):
    with pytest.raises(RecipeError, match=r"tflite/int8 need calibration data.*--calibration"):
        edgeopt.convert(str(model_h5), INT8, out=tmp_path, **quiet())


@pytest.mark.parametrize("x,pattern", [
    (np.zeros((20, 8, 8), np.float32), r"shape \(8, 8\) do not fit model input 'image'.*add the channel axis"),
    (np.zeros((20, 28, 28, 1), np.float32), r"shape \(28, 28, 1\) do not fit"),
    (np.zeros((20, 8, 8, 1), np.uint8), r"dtype uint8 does not fit model input 'image' \(float32\)"),
    (np.array([["a"] * 64] * 4).reshape(4, 8, 8, 1), r"dtype <U1 does not fit"),
])
def test_calibration_data_that_does_not_fit_the_model_is_refused(model_h5, tmp_path, x, pattern):
    np.savez(tmp_path / "calib.npz", x=x)
    with pytest.raises(DataError, match=pattern):
        edgeopt.convert(str(model_h5), INT8, calibration=str(tmp_path / "calib.npz"), out=tmp_path / "o", **quiet())


def test_calibration_file_without_x_is_refused(model_h5, tmp_path):
    np.savez(tmp_path / "calib.npz", images=np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(DataError, match=r"has no 'x' array \(found: images\)"):
        edgeopt.convert(str(model_h5), INT8, calibration=str(tmp_path / "calib.npz"), out=tmp_path / "o", **quiet())


@pytest.mark.parametrize("out,pattern", [
    ("a_file", r"output folder '.*a_file' is a file, not a folder; choose a folder with --out"),
    ("a_file/out", r"output folder '.*a_file/out' is a file, not a folder: '.*a_file' on its path; choose a folder"),
])
def test_an_output_path_that_is_a_file_is_refused_up_front_and_the_file_is_kept(model_h5, tmp_path, out, pattern):
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    with pytest.raises(OutputError, match=pattern):
        edgeopt.convert(str(model_h5), FP32_ONLY, out=tmp_path / out, **quiet())
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("recipe,pattern", [
    ({"exports": [{"format": "coreml"}]}, r"unknown format 'coreml' \(valid formats: onnx, tflite\)"),
    ({"exports": [{"format": "onnx", "precision": "fp16"}]}, r"onnx has no precision 'fp16' \(valid: fp32, int8-dynamic, int8\)"),
    ({"exports": [{"format": "tflite", "precision": "int4"}]}, r"tflite has no precision 'int4' \(valid: fp32, fp16"),
    ({"exports": [{"format": "onnx", "precision": "int8", "quant_format": "fast"}]}, r"quant_format='fast' is not one of 'qdq', 'qoperator'"),
    ({"prune": {"target_sparsity": 1.5}}, r"prune.target_sparsity: Input should be less than 1"),
    ({"prune": {"sparsity": 0.5}}, r"prune.sparsity: unknown field"),
])
def test_invalid_recipes_list_every_problem_with_the_valid_values(model_h5, tmp_path, recipe, pattern):
    with pytest.raises(RecipeError, match=pattern):
        edgeopt.convert(str(model_h5), recipe, calibration="digits", out=tmp_path, **quiet())


@pytest.mark.parametrize("recipe,expected", [
    ({"exports": [{"format": "coreml"}, {"format": "onnx", "precision": "fp16"}]},
     ["exports[0]: unknown format 'coreml'", "exports[1]: onnx has no precision 'fp16'"]),
    # A type error (pydantic) and a capability problem (an unknown option) in one recipe: both are told.
    ({"exports": [{"format": "tflite", "precision": "int8", "calibraton_method": "entropy"}],
      "prune": {"target_sparsity": 1.5}},
     ["prune.target_sparsity: Input should be less than 1",
      "exports[0]: tflite/int8: unknown option 'calibraton_method' (valid options: activations, allow_float_ops, backend, calibration_method, fallback, io_type, recurrent)"]),
    ({"seed": "abc", "exports": [{"precision": "int8"}, {"format": "onnx", "precision": "int8", "quant_format": "fast"}]},
     ["seed: Input should be a valid integer", "exports[0].format: Field required",
      "exports[1]: onnx/int8: quant_format='fast' is not one of 'qdq', 'qoperator'"]),
    ({"prune": {"m_by_n": "4:2", "epochs": 0}, "check": {"tolerances": {"int8": {"min_cosine": "high"}, "int9": {},
                                                                        "fp16": {"min_top1_agreemnt": 0.9}}}},
     ["prune.epochs: Input should be greater than or equal to 1", "prune.m_by_n: '4:2' must be M:N with 0 < M < N",
      "check.tolerances.int8.min_cosine: Input should be a valid number", "check.tolerances: unknown precision 'int9'",
      "check.tolerances.fp16: unknown tolerance 'min_top1_agreemnt'"]),
])
def test_every_bad_value_of_a_recipe_is_reported_in_one_message(recipe, expected):
    from edgeopt.recipe import build_recipe

    with pytest.raises(RecipeError) as e:
        build_recipe(recipe)
    assert len(e.value.problems) == len(expected), e.value.problems
    for problem, fragment in zip(sorted(e.value.problems), sorted(expected)):
        assert problem.startswith(fragment), (problem, fragment)


def test_an_op_int8_cannot_quantize_is_named_and_other_exports_complete(tmp_path):
    import tensorflow as tf
    import tf_keras as keras

    inp = keras.Input((16,), name="features")
    h = keras.layers.Dense(16, name="fc1")(inp)
    h = tf.math.sin(h)
    out = keras.layers.Dense(4, name="head")(h)
    model = keras.Model(inp, out, name="wavy")
    x = np.random.default_rng(0).random((64, 16), dtype=np.float32)
    recipe = {"exports": [{"format": "tflite", "precision": "fp32"}, {"format": "tflite", "precision": "int8"},
                          {"format": "onnx", "precision": "fp32"}]}
    manifest = edgeopt.convert(model, recipe, calibration=x, out=tmp_path, **quiet())
    status = {a.id: a.status for a in manifest.artifacts}
    assert status == {"wavy.fp32.tflite": "ok", "wavy.int8.tflite": "failed", "wavy.fp32.onnx": "ok"}
    error = manifest.get("wavy.int8.tflite").error
    assert "SIN (layer 'tf.math.sin')" in error and "allow_float_ops" in error
    assert (tmp_path / "wavy.fp32.tflite").exists() and (tmp_path / "wavy.fp32.onnx").exists()


def test_allow_float_ops_accepts_the_mixed_model(tmp_path):
    import tensorflow as tf
    import tf_keras as keras

    inp = keras.Input((16,))
    out = keras.layers.Dense(4)(tf.math.sin(keras.layers.Dense(16)(inp)))
    model = keras.Model(inp, out, name="wavy")
    x = np.random.default_rng(0).random((64, 16), dtype=np.float32)
    recipe = {"exports": [{"format": "tflite", "precision": "int8", "allow_float_ops": True}]}
    manifest = edgeopt.convert(model, recipe, calibration=x, out=tmp_path, **quiet())
    assert [a.id for a in manifest.ok] == ["wavy.int8.mixed.tflite"]
