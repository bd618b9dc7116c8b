"""`edgeopt survey DIR`: one row per model, whatever the model does; Markdown and JSON written."""

import json
import re
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def folder(tmp_path_factory, model_h5, lambda_model_file):
    d = tmp_path_factory.mktemp("models")
    (d / "digits_cnn.h5").write_bytes(model_h5.read_bytes())
    (d / "with_lambda.h5").write_bytes(lambda_model_file.read_bytes())
    (d / "README.md").write_text("not a model: the survey skips it")
    return d


@pytest.fixture(scope="module")
def lambda_model_file(tmp_path_factory):
    import tf_keras as keras

    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Lambda(lambda t: t + 1.0, name="shift")(inp)))
    path = tmp_path_factory.mktemp("lambda") / "with_lambda.h5"
    model.save(path)
    return path


@pytest.mark.slow
def test_survey_cli_writes_one_row_per_model_and_never_crashes(folder, tmp_path):
    out = tmp_path / "survey"
    done = subprocess.run([sys.executable, "-m", "edgeopt.cli", "survey", str(folder), "--out", str(out),
                           "--samples", "8"], capture_output=True, text=True, timeout=900)
    # Exit codes as convert's: a model that did not convert (here, refused) makes it 1, and stderr says which.
    assert done.returncode == 1, done.stderr[-2000:]
    assert re.search(r"of 2 models did not convert cleanly: .*with_lambda \(refused\)", done.stderr)
    report = json.loads((out / "survey.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    assert set(rows) == {"digits_cnn", "with_lambda"}
    assert rows["digits_cnn"]["loader"] == "tf_keras" and rows["digits_cnn"]["status"] in ("converted", "partial")
    assert {(a["format"], a["precision"]) for a in rows["digits_cnn"]["artifacts"] if a["status"] == "ok"} >= {
        ("tflite", "fp32"), ("onnx", "fp32")}
    assert rows["with_lambda"]["status"] == "refused" and "layer 'shift' (Lambda)" in rows["with_lambda"]["error"]
    markdown = (out / "survey.md").read_text()
    assert "| digits_cnn " in markdown and "refused (1)" in markdown and "**synthetic**" in markdown
    assert markdown in done.stdout
    assert (out / "models" / "digits_cnn" / "manifest.json").exists()


def test_survey_of_a_folder_without_models_says_so(tmp_path):
    import edgeopt
    from edgeopt.errors import EdgeoptError

    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(EdgeoptError, match=r"no Keras model in .*HDF5, .keras zip and SavedModel"):
        edgeopt.survey(tmp_path, tmp_path / "out", log=lambda *_: None)
