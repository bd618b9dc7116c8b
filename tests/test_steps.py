"""Every declared optimization step is run, recorded, reused and documented as declared (edgeopt/steps/).

A test here fails when a step is declared without being tested (as tests/test_capabilities.py does for
exports), when the manifest's records stop matching the declared options, or when `edgeopt steps` or the
README stop showing the declared tables.
"""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

import edgeopt
from edgeopt import data
from edgeopt.steps import STEPS
from edgeopt.steps.docs import reference

# prune -> cluster -> qat: PCQAT keeps both the zeros and the clusters; exports default to those QAT offers.
CHAIN = {"name": "chain", "optimize": [
    {"prune": {"target_sparsity": 0.8, "epochs": 2}},
    {"cluster": {"clusters": 8, "epochs": 1}},
    {"qat": {"epochs": 1}},
]}
# A Keras 3 model, unlabelled training data: every step learns from the teacher (the source model).
UNLABELLED = {"name": "k3", "optimize": [
    {"distill": {"epochs": 2}},
    {"prune": {"target_sparsity": 0.5, "epochs": 2}},
    {"qat": {"epochs": 1}},
]}
# Structured channel pruning (channels.py) as a step, fine-tuned by the shared recipe.
CHANNELS = {"name": "ch", "optimize": [{"channels": {"target": 0.5, "epochs": 2}}],
            "exports": [{"format": "tflite", "precision": "fp32"}]}
TESTED_SEQUENCES = [CHAIN["optimize"], UNLABELLED["optimize"], CHANNELS["optimize"]]
ROOT = Path(__file__).resolve().parent.parent


def quiet(**kwargs):
    return {"progress": False, "log": lambda *_: None, **kwargs}


def test_every_declared_step_is_run_by_a_test():
    # Declaring a step without running it here fails.
    tested = {next(iter(entry)) for sequence in TESTED_SEQUENCES for entry in sequence}
    assert tested == set(STEPS)


@pytest.fixture(scope="session")
def chain(model_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("chain")
    manifest = edgeopt.convert(str(model_h5), CHAIN, train="digits", evaluation="digits", out=out, **quiet())
    return manifest, out


def test_each_step_is_an_artifact_with_parent_options_data_metrics_and_cache_key(chain):
    manifest, out = chain
    steps = [a for a in manifest.artifacts if a.format == "keras"]
    assert [a.stage for a in steps] == ["prune", "cluster", "qat"]
    assert [a.id for a in steps] == ["chain.pruned80.keras", "chain.pruned80.clustered8.keras",
                                     "chain.pruned80.clustered8.qat.h5"]
    assert [a.parent for a in steps] == [None, steps[0].id, steps[1].id]
    for a in steps:
        assert a.status == "ok", a.error
        assert set(a.options) == set(STEPS[a.stage].spec.model_fields), a.id  # the declared options, all of them
        assert a.facts["data"]["source"] == "digits:train" and a.facts["data"]["labels"] is True
        assert a.facts["training"][0]["epochs_run"] == a.options["epochs"]
        objective = a.facts["training"][0]["objective"]
        assert objective["kind"] == "labels" and objective["loss"].startswith("sparse_categorical_crossentropy")
        assert 0.5 < a.check["accuracy"] <= 1 and a.check["reference_accuracy"] > 0.85
        assert re.fullmatch(r"[0-9a-f]{32}", a.cache_key) and (out / a.path).exists()
    assert steps[2].options["preserve"] == "sparsity+clusters"  # 'auto' resolved and recorded
    assert steps[1].options["preserve_sparsity"] is True


def test_qat_after_pruning_and_clustering_keeps_the_zeros_and_the_clusters(chain):
    manifest, _ = chain
    qat = manifest.get("chain.pruned80.clustered8.qat.h5")
    assert qat.facts["result"]["scheme"].startswith("PCQAT")
    assert qat.sparsity["model"] >= 0.78
    assert max(qat.facts["distinct_values"].values()) <= 9  # 8 clusters and the zeros kept
    assert qat.check["tolerance"] == {"min_sparsity": pytest.approx(0.98 * manifest.get("chain.pruned80.keras").sparsity["model"], abs=1e-4)}


def test_exports_after_qat_take_its_learned_ranges_and_pass_their_checks(chain):
    manifest, _ = chain
    exports = [a for a in manifest.artifacts if a.format != "keras"]
    assert {(a.format, a.precision) for a in exports} == {("tflite", "int8"), ("onnx", "int8")}
    for a in exports:
        assert a.status == "ok", a.error
        assert a.parent == "chain.pruned80.clustered8.qat.h5" and "quantization-aware" in a.facts["ranges"]
    onnx = manifest.get("chain.pruned80.clustered8.qat.int8.onnx")
    assert onnx.stage == "onnx-export" and onnx.facts["float_compute_nodes"] == {}
    assert onnx.facts["quantized_compute_nodes"] >= 4  # QDQ around every conv and matmul, int8 weights:
    assert onnx.size_bytes < 0.4 * 230_000  # a third of the fp32 file (tf2onnx from TensorFlow kept float weights)


def test_a_rerun_reuses_every_step_and_gives_the_same_records(chain, model_h5):
    manifest, out = chain
    logs = []
    again = edgeopt.convert(str(model_h5), CHAIN, train="digits", evaluation="digits", out=out, progress=False,
                            log=logs.append)
    assert [a.to_dict() for a in again.artifacts] == [a.to_dict() for a in manifest.artifacts]
    assert sum("reusing" in line for line in logs) == len(manifest.artifacts)
    assert {a.run for a in again.artifacts} == {manifest.runs[0]["id"]}  # every file still names the run that made it


def test_channel_pruning_as_a_step_records_a_smaller_model_that_exports(model_h5, tmp_path):
    from edgeopt.steps.runner import load_saved

    manifest = edgeopt.convert(str(model_h5), CHANNELS, train="digits", evaluation="digits", out=tmp_path, **quiet())
    step, export = manifest.artifacts
    assert (step.id, step.stage, step.status) == ("ch.channels50.keras", "channels", "ok"), step.error
    assert set(step.options) == set(STEPS["channels"].spec.model_fields) and step.options["target"] == 0.5
    result = step.facts["result"]
    assert result["params"]["after"] < 0.7 * result["params"]["before"] and result["macs"]["ratio"] < 0.7
    saved = load_saved(tmp_path / step.path)
    assert saved.count_params() == result["params"]["after"]  # the file holds the smaller model
    assert step.facts["training"][0]["epochs_run"] == 2  # the shared fine-tuning ran, and is recorded
    assert step.check["accuracy"] >= step.check["reference_accuracy"] - 0.1
    assert export.parent == step.id and export.status == "ok", export.error


def test_edgeopt_steps_and_the_readme_show_the_declared_tables():
    from edgeopt.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["steps", "--markdown"]) == 0
    tables = reference(markdown=True)
    assert tables in printed.getvalue()
    assert tables in (ROOT / "README.md").read_text(), "README's step tables differ from `edgeopt steps --markdown`"


def keras3_digits_classifier():
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu"), L.Flatten(),
                              L.Dense(10, activation="softmax")], name="k3")
    train = data.digits("train")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(train.x[0], train.y, epochs=8, verbose=0)
    return model


def test_a_keras3_model_goes_through_distill_prune_qat_with_unlabelled_data(tmp_path):
    model = keras3_digits_classifier()
    weights = [w.copy() for w in model.get_weights()]
    unlabelled = data.Dataset(data.digits("train").x, None, "digits without labels")
    manifest = edgeopt.convert(model, UNLABELLED, train=unlabelled, evaluation="digits", out=tmp_path, **quiet())
    assert manifest.source["loader"] == "keras3"
    assert [a.status for a in manifest.artifacts] == ["ok"] * 5, [(a.id, a.error) for a in manifest.artifacts]
    distilled, pruned, qat = manifest.artifacts[:3]
    assert distilled.facts["bridge"] == "keras3->tf_keras" and distilled.facts["max_abs_error"] <= 1e-4
    for step in (distilled, pruned, qat):
        assert step.facts["data"]["labels"] is False
        objective = step.facts["training"][0]["objective"]
        assert objective["kind"] == "distillation" and objective["teacher"] == "source" and objective["alpha"] == 0.0
        assert step.facts["teacher"]["sha256"] == distilled.facts["teacher"]["sha256"]
    assert pruned.sparsity["model"] >= 0.49 and qat.sparsity["model"] >= 0.48
    assert qat.check["accuracy"] >= qat.check["reference_accuracy"] - 0.05
    for export in manifest.artifacts[3:]:
        assert export.check["accuracy"] >= qat.check["accuracy"] - 0.02, export.id
    for before, after in zip(weights, model.get_weights()):  # the source model (also the teacher) is untouched
        np.testing.assert_array_equal(before, after)
