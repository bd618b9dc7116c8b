"""Data at fault is named as such, before any work: non-finite arrays, labels that do not fit the model's loss."""

import json
import subprocess
import sys

import numpy as np
import pytest

import edgeopt
from edgeopt import data
from edgeopt.converter.labels import fit_labels
from edgeopt.errors import DataError

FP32_TFLITE = {"exports": [{"format": "tflite", "precision": "fp32"}]}
PRUNE_FP32 = {"prune": {"target_sparsity": 0.5, "epochs": 1}, **FP32_TFLITE}


def quiet(**kwargs):
    return {"progress": False, "log": lambda *_: None, **kwargs}


def edgeopt_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgeopt.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def spoiled(role, where, value):
    """Digits for `role` with `value` written once into samples 3 and 7 of array `where` ('x' or 'y')."""
    ds = data.digits(role)
    x, y = ds.x[0].copy(), ds.y.astype(np.float64)
    if where == "x":
        x[[3, 7], 0, 0, 0] = value
    else:
        y[[3, 7]] = value
    return {"x": x, "y": y if where == "y" else ds.y}


@pytest.mark.parametrize("role,where,value,pattern", [
    ("calibration", "x", np.inf, r"calibration data .*array 'x' holds 2 infinite value\(s\) in 2 of \d+ samples "
                                 r"\(first: sample 3\)\. Int8 calibration cannot use them"),
    ("calibration", "x", np.nan, r"array 'x' holds 2 NaN value\(s\) in 2 of"),
    ("train", "x", np.nan, r"train data .*array 'x' holds .*NaN.*Fine-tuning on them"),
    ("train", "y", np.nan, r"train data .*array 'y' holds 2 NaN value\(s\) in 2 of"),
    ("evaluation", "x", -np.inf, r"evaluation data .*infinite.*the data is at fault"),
])
def test_non_finite_data_is_refused_before_any_work_naming_file_array_and_count(
        model_h5, tmp_path, role, where, value, pattern):
    path = tmp_path / f"{role}.npz"
    np.savez(path, **spoiled("evaluation" if role == "evaluation" else "train", where, value))
    recipe = PRUNE_FP32 if role == "train" else {"exports": [{"format": "tflite", "precision": "int8"}]}
    sources = {"calibration": "digits", "evaluation": "digits", "train": "digits", role: str(path)}
    out = tmp_path / "out"
    with pytest.raises(DataError, match=pattern):
        edgeopt.convert(str(model_h5), recipe, out=out, **sources, **quiet())
    assert not any(out.iterdir()), "nothing may be written before the data is checked"


def test_the_cli_refuses_inf_calibration_with_exit_2_and_no_traceback(model_h5, tmp_path):
    np.savez(tmp_path / "calib.npz", x=spoiled("train", "x", np.inf)["x"])
    result = edgeopt_cli("convert", model_h5, "--calibration", tmp_path / "calib.npz", "--out", tmp_path / "out",
                         "--quiet")
    assert result.returncode == 2, result.stderr
    assert "calib.npz: array 'x' holds 2 infinite value(s)" in result.stderr and "Traceback" not in result.stderr


def test_bench_refuses_nan_evaluation_data_as_the_data_at_fault(converted, tmp_path):
    _, out, _ = converted
    np.savez(tmp_path / "eval.npz", **spoiled("evaluation", "x", np.nan))
    result = edgeopt_cli("bench", out / "digits_cnn.pruned50.fp32.tflite", "--evaluation", tmp_path / "eval.npz",
                         "--out", tmp_path / "report", "--quiet")
    assert result.returncode == 2, result.stderr
    assert "eval.npz: array 'x' holds" in result.stderr and "the data is at fault" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "report" / "report.json").exists()


def test_a_check_names_the_keras_model_when_its_own_outputs_are_nan():
    from edgeopt.check import compare

    reference = np.ones((4, 3))
    reference[1, 0] = np.nan
    result = compare([reference], [np.ones((4, 3))], "fp32")
    assert not result["passed"]
    assert "the Keras model's own outputs hold 1 NaN/infinite value(s)" in result["problems"][0]
    assert "the reference is at fault, not this file" in result["problems"][0]
    candidate = np.ones((4, 3))
    candidate[2] = np.inf
    assert compare([np.ones((4, 3))], [candidate], "fp32")["problems"] == [
        "output 0: 3 NaN/infinite value(s) where the Keras model's outputs are finite"]


INDICES = np.array([0, 3, 9, 1])
ONE_HOT = np.eye(10)[INDICES]


@pytest.mark.parametrize("y,shape,loss,expected,converted", [
    (INDICES, [None, 10], "categorical_crossentropy", ONE_HOT, "class indices -> one-hot labels (10 classes)"),
    (INDICES[:, None], [None, 10], "categorical_crossentropy", ONE_HOT, "class indices -> one-hot"),
    (ONE_HOT, [None, 10], "sparse_categorical_crossentropy", INDICES, "one-hot labels -> class indices"),
    (INDICES.astype(float), [None, 10], "sparse_categorical_crossentropy", INDICES, None),
    (ONE_HOT, [None, 10], "categorical_crossentropy", ONE_HOT, None),
    (INDICES, [None, 10], None, INDICES, None),  # no loss: inferred later from the labels as they are
    (np.array([0, 1, 1, 0]), [None, 1], "binary_crossentropy", np.array([0, 1, 1, 0]), None),
    (np.zeros((4, 5, 5)), [None, 5, 5, 3], "sparse_categorical_crossentropy", np.zeros((4, 5, 5)), None),
    (np.zeros((4, 5, 5)), [None, 5, 5, 3], "categorical_crossentropy", np.eye(3)[np.zeros((4, 5, 5), int)], "one-hot"),
    (np.array([[0.2], [1.5]]), [None, 4], "my_custom_loss", np.array([[0.2], [1.5]]), None),  # unknown: not checked
])
def test_labels_are_converted_where_only_one_reading_is_possible(y, shape, loss, expected, converted):
    got, note = fit_labels(y, shape, loss, "train.npz")
    np.testing.assert_array_equal(got, expected)
    assert (note is None) if converted is None else (converted in note)


@pytest.mark.parametrize("y,shape,loss,pattern", [
    (INDICES + 5, [None, 10], "categorical_crossentropy",
     r"train.npz go from 5 to 14, but the model's output has 10 classes \(categorical_crossentropy needs 0..9\)"),
    (np.eye(7)[[0, 1]], [None, 10], "categorical_crossentropy",
     r"categorical_crossentropy expects one-hot labels of shape \(samples, 10\), or class indices 0..9; the data "
     r"holds an array of shape \(2, 7\)"),
    (np.array([0.5, 0.2]), [None, 10], "sparse_categorical_crossentropy",
     r"expects class indices \(integers 0..9\) of shape \(samples\); the data holds an array of shape \(2,\) "
     r"\(float64\)"),
    (INDICES, [None, 10], "binary_crossentropy", r"binary_crossentropy expects targets of the output's shape "
                                                  r"\(samples, 10\).*values from 0 to 9"),
    (INDICES + 20, [None, 10], None, r"go from 20 to 29, but the model's output has 10 classes"),
    (np.ones((4, 3)), [None, 2], "mean_squared_error", r"mean_squared_error expects targets of the output's shape "
                                                       r"\(samples, 2\)"),
])
def test_labels_that_fit_no_reading_are_refused_naming_expected_and_given(y, shape, loss, pattern):
    with pytest.raises(DataError, match=pattern):
        fit_labels(y, shape, loss, "train.npz")


@pytest.fixture(scope="module")
def categorical_h5(trained_model, tmp_path_factory):
    """The digits CNN saved compiled with categorical_crossentropy, as the issue's user had it."""
    import tf_keras as keras

    model = keras.models.clone_model(trained_model)
    model.set_weights(trained_model.get_weights())
    model.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    path = tmp_path_factory.mktemp("categorical") / "digits_categorical.h5"
    model.save(path)
    return path


def test_integer_labels_prune_a_categorical_model_and_the_loss_is_recorded_by_name(categorical_h5, tmp_path):
    ds = data.digits("train")
    np.savez(tmp_path / "train.npz", x=ds.x[0][:256], y=ds.y[:256])
    result = edgeopt_cli("convert", categorical_h5, "--prune", "0.5", "--prune-epochs", "1", "--train",
                         tmp_path / "train.npz", "--formats", "tflite", "--precisions", "fp32", "--evaluation",
                         "digits", "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "class indices -> one-hot labels (10 classes)" in manifest["data"]["train"]["labels_converted"]
    pruned = next(a for a in manifest["artifacts"] if a["stage"] == "prune")
    assert pruned["options"]["loss"] == "categorical_crossentropy(from_logits=True)"


def test_labels_of_another_task_stop_pruning_before_any_work(categorical_h5, tmp_path):
    ds = data.digits("train")
    np.savez(tmp_path / "train.npz", x=ds.x[0][:64], y=np.eye(7)[ds.y[:64] % 7])
    result = edgeopt_cli("convert", categorical_h5, "--prune", "0.5", "--train", tmp_path / "train.npz",
                         "--formats", "tflite", "--precisions", "fp32", "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "expects one-hot labels of shape (samples, 10)" in result.stderr and "(64, 7)" in result.stderr
    # The CLI's log of TensorFlow's own messages is all the folder holds: no record, no file.
    assert [p.name for p in (tmp_path / "out").iterdir()] in ([], ["edgeopt.log"])
