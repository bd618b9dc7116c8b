"""What real users bring: Lambda layers, Windows-saved .keras files, recurrent layers, string inputs, no data."""

import io
import zipfile

import numpy as np
import pytest

import edgeopt
from edgeopt.errors import ModelLoadError
from edgeopt.fileio import sha256_file

FP32 = [{"format": "tflite", "precision": "fp32"}, {"format": "onnx", "precision": "fp32"}]


def quiet(**kwargs):
    return {"progress": False, "log": lambda *_: None, **kwargs}


@pytest.fixture(scope="module")
def lambda_h5(tmp_path_factory):
    import tf_keras as keras

    inp = keras.Input((6,), name="x")
    h = keras.layers.Lambda(lambda t: t * 2.0 - 1.0, name="normalise")(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(h), name="with_lambda")
    path = tmp_path_factory.mktemp("lambda") / "with_lambda.h5"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def custom_class_h5(tmp_path_factory):
    import tf_keras as keras

    class Scale(keras.layers.Layer):
        def call(self, x):
            return x * 3.0

    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(3)(Scale(name="scale")(inp)), name="with_custom")
    path = tmp_path_factory.mktemp("custom") / "with_custom.h5"
    model.save(path)
    return path


@pytest.mark.parametrize("fixture,pattern", [
    ("lambda_h5", r"layer 'normalise' \(Lambda\): it holds a Python function that loading executes"),
    ("custom_class_h5", r"layer 'scale' \(Scale\): Scale is not a Keras class: loading it imports and runs that code"),
])
def test_stored_code_is_refused_by_default_naming_the_layer_and_the_opt_in(request, tmp_path, fixture, pattern):
    path = request.getfixturevalue(fixture)
    before = sha256_file(path)
    with pytest.raises(ModelLoadError, match=pattern + r".*--trust-model-code.*trust_model_code=True"):
        edgeopt.convert(str(path), {"exports": FP32}, out=tmp_path, **quiet())
    assert sha256_file(path) == before


def test_a_trusted_lambda_model_converts(lambda_h5, tmp_path):
    manifest = edgeopt.convert(str(lambda_h5), {"exports": FP32}, out=tmp_path, trust_model_code=True, **quiet())
    assert [a.status for a in manifest.artifacts] == ["ok", "ok"], [a.error for a in manifest.artifacts]
    assert manifest.source["stored_code"] == ["normalise (Lambda)"]


def test_bytecode_from_another_python_is_named_in_the_refusal(lambda_h5, tmp_path):
    import json

    import h5py

    path = tmp_path / "old_python.h5"
    path.write_bytes(lambda_h5.read_bytes())
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layer = next(lay for lay in config["config"]["layers"] if lay["class_name"] == "Lambda")
        # A Python 3.8-3.10 code-object header (six int32 fields before the bytecode), as in the corpus file.
        import base64

        layer["config"]["function"][0] = base64.b64encode(bytes([0xE3]) + bytes(24) + b"s\x04\x00\x00\x00|\x00S\x00").decode()
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ModelLoadError, match=r"marshalled by another Python version \(likely Python 3\.8-3\.10\)"):
        edgeopt.convert(str(path), {"exports": FP32}, out=tmp_path / "out", **quiet())
    with pytest.raises(ModelLoadError, match=r"even with --trust-model-code: layer 'normalise'.*another Python"):
        edgeopt.convert(str(path), {"exports": FP32}, out=tmp_path / "out", trust_model_code=True, **quiet())


def _windows_copy(src, dst):
    """Rewrite a .keras archive the way Keras 2.15 on Windows wrote it: backslashes in weight group names."""
    import h5py

    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    out = io.BytesIO()
    with h5py.File(io.BytesIO(files["model.weights.h5"]), "r") as f, h5py.File(out, "w") as g:
        def windows(name):  # 'layers/lstm/cell/vars/0' -> 'layers\\lstm\\cell/vars/0'
            head, sep, tail = name.partition("/vars")
            return head.replace("/", "\\") + sep + tail

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                g.create_dataset(windows(name), data=obj[()])
            else:
                g.require_group(windows(name))
        f.visititems(copy)
    files["model.weights.h5"] = out.getvalue()
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def test_a_keras_file_saved_on_windows_is_repaired_in_a_copy_with_a_warning(tmp_path):
    import tf_keras as keras

    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)], name="win")
    model.save(tmp_path / "clean.keras")
    broken = tmp_path / "win.keras"
    _windows_copy(tmp_path / "clean.keras", broken)
    with pytest.raises(ValueError, match=r"expected \d+ variables, but received 0"):
        keras.models.load_model(broken)  # the bug this repairs: tf_keras alone cannot read the file
    before = sha256_file(broken)
    logged = []
    manifest = edgeopt.convert(str(broken), {"exports": FP32}, out=tmp_path / "out", progress=False, log=logged.append)
    assert sha256_file(broken) == before
    assert any("Windows backslashes" in line for line in logged)
    assert "Windows backslashes" in manifest.source["warnings"][0]
    assert [a.status for a in manifest.artifacts] == ["ok", "ok"], [a.error for a in manifest.artifacts]


def recurrent_model():
    import tf_keras as keras

    L = keras.layers
    return keras.Sequential([keras.Input((12, 3)), L.LSTM(8, return_sequences=True), L.Bidirectional(L.GRU(4)),
                             L.Dense(5, activation="softmax")], name="rnn")


def test_recurrent_models_export_without_flex_at_a_fixed_batch_that_is_recorded(tmp_path):
    from edgeopt.bench.device.runtimes import open_model

    manifest = edgeopt.convert(recurrent_model(), {"exports": FP32}, calibration="synthetic", out=tmp_path, **quiet())
    assert [a.status for a in manifest.artifacts] == ["ok", "ok"], [a.error for a in manifest.artifacts]
    assert manifest.source["export_batch"]["tflite"] == 1 and "recurrent layers" in manifest.source["export_batch"]["why"]
    tflite = manifest.get("rnn.fp32.tflite")
    assert tflite.facts["fixed_batch"] == 1 and tflite.inputs[0]["shape"][0] == 1
    assert not any("Flex" in op for op in open_model(str(tmp_path / tflite.path)).ops())


@pytest.mark.slow
def test_recurrent_int8_is_attempted_and_a_failure_keeps_the_float_files(tmp_path):
    exports = FP32 + [{"format": "tflite", "precision": "int8"}]
    manifest = edgeopt.convert(recurrent_model(), {"exports": exports, "fixed_batch": 2,
                                                   "data": {"calibration_samples": 8}},
                               calibration="synthetic", out=tmp_path, **quiet())
    int8 = manifest.get("rnn.int8.tflite")
    assert int8.status == "ok" or "TFLite int8" in int8.error
    assert int8.facts["synthetic_calibration"] is True
    assert manifest.source["export_batch"]["tflite"] == 2
    assert manifest.get("rnn.fp32.tflite").status == "ok" and manifest.get("rnn.fp32.onnx").status == "ok"


def test_string_inputs_are_refused_with_the_reason(tmp_path):
    import tf_keras as keras

    inp = keras.Input((1,), dtype="string", name="text")
    ids = keras.layers.StringLookup(vocabulary=["a", "b", "c"], name="lookup")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Embedding(5, 4)(ids)), name="texty")
    with pytest.raises(ModelLoadError, match=r"input\(s\) 'text' take strings.*Split the model.*lookup \(StringLookup\)"):
        edgeopt.convert(model, {"exports": FP32}, out=tmp_path, **quiet())


def test_synthetic_calibration_is_marked_in_the_manifest_and_the_table(model_h5, tmp_path):
    from edgeopt.summary import conversion_table

    manifest = edgeopt.convert(str(model_h5), {"exports": [{"format": "tflite", "precision": "int8"}],
                                               "data": {"calibration_samples": 16}},
                               calibration="synthetic", out=tmp_path, **quiet())
    assert manifest.data["calibration"]["synthetic"] is True
    assert manifest.artifacts[0].facts["synthetic_calibration"] is True
    assert manifest.artifacts[0].check["synthetic_inputs"] is True
    assert "calibrated on synthetic inputs" in conversion_table(manifest)


def test_synthetic_inputs_follow_the_range_the_model_implies():
    import tf_keras as keras

    from edgeopt.converter.anatomy import input_ranges
    from edgeopt.converter.keras_io import input_specs
    from edgeopt.data import synthetic

    tokens = keras.Sequential([keras.Input((8,)), keras.layers.Embedding(50, 4), keras.layers.Flatten()])
    pixels = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten()])
    x = synthetic(input_specs(tokens), 64, ranges=input_ranges(tokens)).x[0]
    assert x.dtype == np.float32 and np.all(x == np.round(x)) and x.min() >= 0 and x.max() < 50 and x.max() > 25
    x = synthetic(input_specs(pixels), 64, ranges=input_ranges(pixels)).x[0]
    assert x.max() > 128 and x.max() <= 255


def test_training_data_cannot_be_synthetic(model_h5, tmp_path):
    from edgeopt.errors import DataError

    with pytest.raises(DataError, match=r"training data cannot be synthetic"):
        edgeopt.convert(str(model_h5), {"prune": {"target_sparsity": 0.5}, "exports": FP32[:1]}, train="synthetic",
                        out=tmp_path, **quiet())


def test_tensorflow_ops_in_a_saved_model_are_not_mistaken_for_stored_code(tmp_path):
    import tensorflow as tf
    import tf_keras as keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(tf.math.abs(inp)[:, :3]), name="ops")  # a sin here would rename the one another test expects
    model.save(tmp_path / "ops.h5")
    manifest = edgeopt.convert(str(tmp_path / "ops.h5"), {"exports": FP32[:1]}, out=tmp_path / "out", **quiet())
    assert manifest.source["stored_code"] == [] and manifest.artifacts[0].ok


@pytest.mark.parametrize("flags,code,expected", [
    (["--calibration", "synthetic"], 2, "--trust-model-code"),
    (["--calibration", "synthetic", "--trust-model-code"], 0, "int8 calibrated on synthetic inputs"),
])
def test_cli_trust_and_synthetic_flags(lambda_h5, tmp_path, flags, code, expected):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "edgeopt.cli", "convert", str(lambda_h5), "--formats", "tflite",
                             "--precisions", "fp32,int8", "--out", str(tmp_path), "--quiet", *flags],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == code, result.stderr[-1500:]
    assert expected in (result.stdout + result.stderr)
