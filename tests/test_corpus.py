"""The ten real Keras models strangers published (../shared/realmodels): one survey run, checked per model.

The files are not part of this repository (their licences are unknown); the tests skip when the folder
is absent. What each file is, and which loader opens it, comes from the folder's own MANIFEST.json.
"""

import json
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "realmodels"
WINDOWS_SAVED = "speech_emotion_lstm_gru_mainakcris7"  # unloadable as shipped; edgeopt repairs a copy
LAMBDA = "behavclone_lambda_krutinpolra"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CORPUS / "MANIFEST.json").exists(),
                       reason=f"the real-model corpus is not at {CORPUS} (it is kept out of the repository)"),
]


@pytest.fixture(scope="session")
def corpus():
    return {m["name"]: m for m in json.loads((CORPUS / "MANIFEST.json").read_text())}


@pytest.fixture(scope="session")
def surveyed(tmp_path_factory):
    from edgeopt.corpus import survey

    out = tmp_path_factory.mktemp("survey")
    report = survey(CORPUS, out, samples=8, log=lambda *_: None)
    return report, out, {r["model"]: r for r in report["rows"]}


def test_every_model_has_a_row_and_none_crashed_the_tool(surveyed, corpus):
    report, out, rows = surveyed
    assert set(rows) == set(corpus)
    assert not [name for name, r in rows.items() if r["status"] in ("crashed", "timeout")]
    assert (out / "survey.md").read_text().count("\n| ") == len(corpus) + 1  # header and one row per model
    assert json.loads((out / "survey.json").read_text())["rows"] == report["rows"]


def test_every_loadable_model_yields_checked_tflite_and_onnx_fp32(surveyed, corpus):
    _, _, rows = surveyed
    loadable = [name for name, m in corpus.items() if m["working_loader"] or name == WINDOWS_SAVED]
    for name in loadable:
        status = {(a["format"], a["precision"]): a for a in rows[name]["artifacts"]}
        for key in (("tflite", "fp32"), ("onnx", "fp32")):
            assert status[key]["status"] == "ok", (name, key, status[key]["error"])


def test_the_loader_matches_the_one_that_opens_each_file(surveyed, corpus):
    _, _, rows = surveyed
    for name, m in corpus.items():
        if m["working_loader"]:
            assert rows[name]["loader"] == m["working_loader"], name
            assert rows[name]["saved_keras_version"] == m["saved_keras_version"], name
    assert rows[WINDOWS_SAVED]["loader"] == "tf_keras"


def test_recurrent_models_record_the_fixed_batch(surveyed, corpus):
    _, _, rows = surveyed
    recurrent = [name for name, m in corpus.items() if set(m["layer_types"] or {}) & {"LSTM", "GRU"}]
    assert recurrent
    for name in recurrent:
        assert rows[name]["export_batch"]["tflite"] == 1, name


def test_every_failed_artifact_says_why(surveyed):
    _, _, rows = surveyed
    for r in rows.values():
        for a in r.get("artifacts", []):
            assert a["status"] == "ok" or len(a["error"] or "") > 20, (r["model"], a["id"])
            assert a["synthetic_calibration"] == (a["precision"] == "int8"), (r["model"], a["id"])


def test_the_lambda_file_is_refused_naming_the_layer_the_risk_and_the_python_version(surveyed):
    _, _, rows = surveyed
    row = rows[LAMBDA]
    assert row["status"] == "refused" and row["stored_code"] == ["lambda (Lambda)"]
    for phrase in ("layer 'lambda' (Lambda)", "loading executes", "--trust-model-code", "another Python version"):
        assert phrase in row["error"], phrase


def test_keras3_models_in_the_corpus_bridge_to_tf_keras_or_name_the_layer(corpus):
    from edgeopt.converter.anatomy import all_layers, input_ranges
    from edgeopt.converter.bridge import BridgeError, to_tf_keras
    from edgeopt.converter.keras_io import input_specs, load_model
    from edgeopt.data import synthetic

    bridged = []
    for name, m in corpus.items():
        if m["working_loader"] != "keras3":
            continue
        model = load_model(CORPUS / m["file"]).model
        x = synthetic(input_specs(model), 4, ranges=input_ranges(model)).x
        try:
            _, facts = to_tf_keras(model, x)
        except BridgeError as e:
            named = {f"layer '{layer.name}' ({type(layer).__name__})" for layer in all_layers(model)}
            assert any(n in str(e) for n in named), (name, str(e))
        else:
            assert facts["max_abs_error"] <= 1e-4, name
            bridged.append(name)
    assert len(bridged) >= 3, bridged
