"""The CLI is a thin shell over the API: flags build a recipe, errors exit 2 with the message, failures exit 1."""

import json
import subprocess
import sys

import numpy as np
import pytest


def edgeopt(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgeopt.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_formats_lists_every_combination_and_what_it_needs():
    result = edgeopt("formats")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for fmt, precision, calib in [("tflite", "int8", "yes"), ("onnx", "int8-dynamic", "no"), ("tflite", "fp16", "no")]:
        assert any(line.split()[:3] == [fmt, precision, calib] for line in lines), (fmt, precision)
    assert "quant_format='qdq'" in result.stdout
    assert "activations='int16' needs backend='ai-edge-quantizer'" in result.stdout  # the option rules, too


def test_convert_with_flags_writes_files_manifest_and_table(model_h5, tmp_path):
    from edgeopt import data

    d = data.digits("train")
    np.savez(tmp_path / "calib.npz", x=d.x[0][:100])
    result = edgeopt("convert", model_h5, "--formats", "tflite,onnx", "--precisions", "fp32,int8",
                     "--calibration", tmp_path / "calib.npz", "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    ids = {a["id"]: a["status"] for a in manifest["artifacts"]}
    assert ids == {"digits_cnn.fp32.tflite": "ok", "digits_cnn.int8.tflite": "ok",
                   "digits_cnn.fp32.onnx": "ok", "digits_cnn.int8.onnx": "ok"}
    assert "digits_cnn.int8.tflite" in result.stdout and "status" in result.stdout
    # TensorFlow's own lines are kept in the output folder, not shown.
    assert "fully_quantize" not in result.stdout + result.stderr
    assert "fully_quantize" in (tmp_path / "out" / "edgeopt.log").read_text()
    # Without evaluation data the check ran on the calibration inputs, and says so.
    assert manifest["data"]["evaluation"]["source"].endswith("calib.npz")


def test_recipe_yaml_with_paths_relative_to_the_recipe(model_h5, tmp_path):
    from edgeopt import data

    np.savez(tmp_path / "calib.npz", x=data.digits("train").x[0][:50])
    (tmp_path / "recipe.yaml").write_text(
        f"model: {model_h5}\n"
        "data: {calibration: calib.npz, calibration_samples: 50}\n"
        "exports:\n  - {format: tflite, precision: int8, io_type: uint8}\n"
    )
    result = edgeopt("convert", "--recipe", tmp_path / "recipe.yaml", "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (art,) = manifest["artifacts"]
    assert art["id"] == "digits_cnn.int8.uint8-io.tflite" and art["inputs"][0]["dtype"] == "uint8"
    assert manifest["data"]["calibration"]["samples"] == 50


@pytest.mark.parametrize("args,pattern", [
    (["convert", "nowhere.h5", "--formats", "tflite", "--precisions", "fp32"], "does not exist"),
    (["convert", "MODEL", "--formats", "tflite,coreml"], "unknown format 'coreml'"),
    (["convert", "MODEL", "--precisions", "int8"], "need calibration data"),
])
def test_bad_input_exits_2_with_the_reason(model_h5, tmp_path, args, pattern):
    args = [model_h5 if a == "MODEL" else a for a in args]
    result = edgeopt(*args, "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 2
    assert pattern in result.stderr and "Traceback" not in result.stderr


BAD_RECIPE = "prune: {target_sparsity: 1.5}\nexports: [{format: tflite, precision: int8, calibraton_method: entropy}]\n"


@pytest.mark.parametrize("case,args,fragments", [
    ("recipe with two kinds of error", ["convert", "MODEL", "--recipe", "RECIPE", "--calibration", "digits"],
     ["prune.target_sparsity: Input should be less than 1", "exports[0]: tflite/int8: unknown option 'calibraton_method'"]),
    ("ssh port above the range", ["target", "check", "ssh://pi@raspberrypi.local:70000"],
     ["port 70000 is outside the range 1-65535"]),
    ("ssh port 0", ["bench", "CONVERTED", "--target", "ssh://pi@raspberrypi.local:0", "--out", "OUT"],
     ["port 0 is outside the range 1-65535", "ssh://user@host:2222"]),
    ("survey of a missing folder", ["survey", "OUT/nowhere", "--out", "OUT"], ["does not exist or is not a folder"]),
])
def test_messages_name_the_cause_and_exit_2(model_h5, converted, tmp_path, case, args, fragments):
    (tmp_path / "recipe.yaml").write_text(BAD_RECIPE)
    where = {"MODEL": model_h5, "RECIPE": tmp_path / "recipe.yaml", "CONVERTED": converted[1]}
    args = [str(where.get(a, a)).replace("OUT", str(tmp_path / "out")) for a in args]
    result = edgeopt(*args)
    assert result.returncode == 2, (case, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.startswith("edgeopt: error: "), case
    for fragment in fragments:
        assert fragment in result.stderr, (case, fragment)


def test_a_failed_artifact_makes_convert_exit_1(tmp_path):
    # An impossible tolerance (cosine above 1) fails the int8 check; the fp32 export is unaffected.
    from edgeopt import data

    np.savez(tmp_path / "calib.npz", x=data.digits("train").x[0][:20])
    script = tmp_path / "make.py"
    script.write_text(
        "import os; os.environ['TF_USE_LEGACY_KERAS']='1'\n"
        "import tf_keras as keras, sys\n"
        "m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])\n"
        "m.save(sys.argv[1])\n"
    )
    subprocess.run([sys.executable, script, tmp_path / "m.h5"], check=True, capture_output=True)
    (tmp_path / "strict.yaml").write_text(
        "check: {tolerances: {int8: {min_cosine: 1.01}}}\n"
        "exports: [{format: tflite, precision: fp32}, {format: tflite, precision: int8}]\n"
    )
    result = edgeopt("convert", tmp_path / "m.h5", "--recipe", tmp_path / "strict.yaml",
                     "--calibration", tmp_path / "calib.npz", "--out", tmp_path / "out", "--quiet", "--no-explain")
    assert result.returncode == 1
    assert "cosine similarity" in result.stdout and "failed" in result.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    failed = {a["id"]: a for a in manifest["artifacts"] if a["status"] == "failed"}
    assert list(failed) == ["m.int8.tflite"]
    # A failed check keeps the file and its figures for the user to inspect, apart from the files to ship.
    assert failed["m.int8.tflite"]["path"] == "failed/m.int8.tflite"
    assert (tmp_path / "out" / "failed" / "m.int8.tflite").exists() and not (tmp_path / "out" / "m.int8.tflite").exists()
    assert failed["m.int8.tflite"]["check"]["cosine"] > 0.9
