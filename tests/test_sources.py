"""Models and data come in every form users have: files, folders, objects, npz, module:function."""

import sys

import numpy as np

import edgeopt

FP32 = {"exports": [{"format": "tflite", "precision": "fp32"}, {"format": "onnx", "precision": "fp32"}]}


def quiet():
    return {"progress": False, "log": lambda *_: None}


def test_savedmodel_folder_and_keras_zip_load_like_h5(trained_model, tmp_path):
    trained_model.save(tmp_path / "saved", save_format="tf")
    trained_model.save(tmp_path / "model.keras")
    for src, container in [(tmp_path / "saved", "savedmodel"), (tmp_path / "model.keras", "keras-zip")]:
        manifest = edgeopt.convert(str(src), FP32, evaluation="digits", out=tmp_path / container, **quiet())
        assert manifest.source["container"] == container
        assert [a.status for a in manifest.artifacts] == ["ok", "ok"]


def test_data_from_a_module_function(trained_model, tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(
        "from edgeopt import data\n"
        "def calibration():\n"
        "    d = data.digits('train')\n"
        "    return d.x[0][:64], d.y[:64]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = {"exports": [{"format": "tflite", "precision": "int8"}]}
    manifest = edgeopt.convert(trained_model, recipe, calibration="mydata:calibration", out=tmp_path / "o", **quiet())
    assert manifest.data["calibration"] == {"source": "mydata:calibration", "samples": 64, "labels": True,
                                            "shapes": [[8, 8, 1]], "synthetic": False}
    assert manifest.artifacts[0].ok
    sys.modules.pop("mydata", None)


def test_calibration_samples_are_bounded(trained_model, tmp_path):
    recipe = {"data": {"calibration_samples": 32}, "exports": [{"format": "onnx", "precision": "int8"}]}
    manifest = edgeopt.convert(trained_model, recipe, calibration="digits", out=tmp_path, **quiet())
    assert manifest.data["calibration"]["samples"] == 32


def test_two_of_four_structured_pruning_keeps_the_pattern(trained_model, tmp_path):
    recipe = {"prune": {"m_by_n": "2:4", "schedule": "constant", "epochs": 1}, **FP32}
    manifest = edgeopt.convert(trained_model, recipe, train="digits", evaluation="digits", out=tmp_path, **quiet())
    pruned = manifest.get("digits_cnn.pruned-2of4.keras")
    assert pruned.ok, pruned.error
    layers = pruned.sparsity["layers"]
    # conv1 has one input channel: not a multiple of 4, so tfmot leaves it dense.
    assert layers["conv1"]["m_by_n_compliance"] is None
    for name in ("conv2", "fc", "logits"):
        assert layers[name]["m_by_n_compliance"] == 1.0 and layers[name]["sparsity"] == 0.5


def test_without_any_data_the_check_runs_on_synthetic_inputs_and_says_so(trained_model, tmp_path):
    manifest = edgeopt.convert(trained_model, FP32, out=tmp_path, **quiet())
    assert manifest.data["evaluation"]["synthetic"] is True
    assert all(a.check["synthetic_inputs"] for a in manifest.artifacts)
    with np.load(manifest.evaluation_path()) as z:
        assert "y" not in z.files and z["x"].shape[1:] == (8, 8, 1)
