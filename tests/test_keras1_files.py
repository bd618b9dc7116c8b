"""Keras 1 files are recognised before any loader runs: the cause is named with what the user can do."""

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

import edgeopt
from edgeopt.errors import ModelLoadError
from edgeopt.fileio import sha256_file

FP32 = {"exports": [{"format": "tflite", "precision": "fp32"}]}
# The start of a code object marshalled by Python 3.5: five int32 fields, then the bytecode, cut short
# (Python 3.11 reads it as "EOF read where object expected", as the file did).
PY35_CODE = b"\xe3" + struct.pack("<5i", 1, 0, 1, 2, 67) + b"s" + struct.pack("<i", 10) + b"|\x00\x00d\x01\x00\x14S"


def dense(name, units, **extra):
    return {"class_name": "Dense", "config": {"name": name, "trainable": True, "output_dim": units,
                                              "init": "glorot_uniform", "activation": "linear", "W_regularizer": None,
                                              "b_regularizer": None, "bias": True, **extra}}


def keras1_h5(path, version=b"1.2.2", with_lambda=True):
    """An HDF5 file laid out as Keras 1.2 wrote it: a Sequential config as a bare list of Keras 1 layers."""
    import h5py

    layers = [dense("dense_1", 8, batch_input_shape=[None, 6], input_dtype="float32", input_dim=6)]
    if with_lambda:  # Keras 1 stored the marshal bytes as raw_unicode_escape text, not base64
        layers.append({"class_name": "Lambda", "config": {
            "name": "lambda_1", "trainable": True, "function": [PY35_CODE.decode("raw_unicode_escape"), None, None],
            "function_type": "lambda", "output_shape": None, "output_shape_type": "raw", "arguments": {}}})
    layers.append(dense("dense_2", 3, input_dim=8))
    with h5py.File(path, "w") as f:
        if version:
            f.attrs["keras_version"] = version
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": layers}).encode()
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = [layer["config"]["name"].encode() for layer in layers]
        for layer in layers:
            group = weights.create_group(layer["config"]["name"])
            config = layer["config"]
            shapes = {"W": (config["input_dim"], config["output_dim"]), "b": (config["output_dim"],)} \
                if "output_dim" in config else {}
            group.attrs["weight_names"] = [f"{config['name']}_{w}:0".encode() for w in shapes]
            for w, shape in shapes.items():
                group.create_dataset(f"{config['name']}_{w}:0", data=np.zeros(shape, np.float32))
    return path


@pytest.mark.parametrize("trusted", [False, True])
def test_a_keras1_file_with_old_python_bytecode_names_both_causes_and_the_way_out(tmp_path, trusted):
    path = keras1_h5(tmp_path / "old.h5")
    before = sha256_file(path)
    with pytest.raises(ModelLoadError) as caught:
        edgeopt.convert(str(path), FP32, calibration="synthetic", out=tmp_path / "out", trust_model_code=trusted,
                        progress=False, log=lambda *_: None)
    message = str(caught.value)
    assert "is a Keras 1 model (saved by Keras 1.2.2)" in message
    assert "neither tf_keras (Keras 2) nor Keras 3 can read" in message
    assert ("Lambda layer(s) 'lambda_1' also hold Python bytecode marshalled by another Python version (likely "
            "Python 3.0-3.7 or 3.11+), which Python 3." in message and "even with --trust-model-code" in message)
    assert "rebuild the architecture in current Keras code" in message and "layer.set_weights()" in message
    assert "EOFError" not in message and "pop expected" not in message
    assert sha256_file(path) == before


def test_keras1_arguments_are_recognised_without_a_saved_version(tmp_path):
    path = keras1_h5(tmp_path / "unversioned.h5", version=None, with_lambda=False)
    with pytest.raises(ModelLoadError, match=r"Keras 1 model \(its layers use Keras 1 arguments: W_regularizer, "
                                             r"b_regularizer, input_dtype, output_dim\)"):
        edgeopt.convert(str(path), FP32, calibration="synthetic", out=tmp_path / "out", progress=False,
                        log=lambda *_: None)


def test_the_cli_exits_2_on_a_keras1_file_without_a_traceback(tmp_path):
    path = keras1_h5(tmp_path / "old.h5")
    result = subprocess.run([sys.executable, "-m", "edgeopt.cli", "convert", str(path), "--trust-model-code",
                             "--calibration", "synthetic", "--out", str(tmp_path / "out"), "--quiet"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "is a Keras 1 model" in result.stderr and "Traceback" not in result.stderr
