"""The manifest tells the truth about every file: hashes, sizes, lineage, options, versions, figures."""

import gzip
import json

import numpy as np

import edgeopt
from edgeopt.fileio import sha256_file
from edgeopt.manifest import Manifest

from .conftest import FULL_RECIPE


def test_records_match_the_files_on_disk(converted):
    manifest, out, _ = converted
    for a in manifest.artifacts:
        data = (out / a.path).read_bytes()
        assert a.sha256 == sha256_file(out / a.path)
        assert a.size_bytes == len(data)
        assert a.gzip_bytes == len(gzip.compress(data, 9, mtime=0))


def test_manifest_on_disk_round_trips_and_is_versioned(converted):
    manifest, out, _ = converted
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["schema"] == "edgeopt.manifest" and raw["schema_version"] == 1
    assert Manifest.load(out).to_dict() == manifest.to_dict()
    assert raw["source"]["loader"] == "tf_keras" and raw["source"]["model_class"] == "Sequential"
    assert raw["tool_versions"]["tensorflow-model-optimization"] == "0.8.1"


def test_lineage_leads_from_each_export_back_to_the_pruned_model(converted):
    manifest, _, _ = converted
    pruned = manifest.get("digits_cnn.pruned50.keras")
    assert pruned.stage == "prune" and pruned.parent is None
    for a in manifest.artifacts:
        if a.stage in ("tflite-convert", "onnx-export"):
            assert a.parent == pruned.id
        elif a.format != "keras":  # a pass over the fp32 file of its format: onnxruntime or ai-edge-quantizer
            parent = manifest.get(a.parent)
            assert (parent.format, parent.precision, parent.parent) == (a.format, "fp32", pruned.id)
            assert a.stage == f"{a.format}-quantize"


def test_measured_sparsity_reaches_the_target_in_every_pruned_layer(converted):
    manifest, _, _ = converted
    sparsity = manifest.get("digits_cnn.pruned50.keras").sparsity
    assert sparsity["model"] >= 0.49
    assert set(sparsity["layers"]) == {"conv1", "conv2", "fc", "logits"}
    assert all(layer["sparsity"] >= 0.49 for layer in sparsity["layers"].values())


def test_pruned_record_states_accuracy_before_and_after(converted):
    check = converted[0].get("digits_cnn.pruned50.keras").check
    assert 0.85 < check["reference_accuracy"] <= 1 and 0.85 < check["accuracy"] <= 1


def test_int8_is_small_faithful_and_accurate(converted):
    manifest, _, _ = converted
    fp32 = manifest.get("digits_cnn.pruned50.fp32.tflite")
    int8 = manifest.get("digits_cnn.pruned50.int8.tflite")
    onnx_fp32 = manifest.get("digits_cnn.pruned50.fp32.onnx")
    onnx_int8 = manifest.get("digits_cnn.pruned50.int8.onnx")
    # int8 weights are a quarter of fp32's: against the dense fp32 encoding (the kept fp32 file may be sparse-encoded).
    assert fp32.facts["sparse_encoding"]["used"] and int8.size_bytes <= 0.3 * fp32.facts["sparse_encoding"]["dense_bytes"]
    assert int8.size_bytes < fp32.size_bytes
    assert onnx_fp32.check["max_abs_error"] <= 1e-4
    for a in (int8, onnx_int8):
        assert abs(a.check["accuracy"] - a.check["reference_accuracy"]) <= 0.015, a.id


def test_evaluation_file_holds_inputs_labels_and_reference_outputs(converted):
    manifest, out, _ = converted
    with np.load(manifest.evaluation_path()) as z:
        assert z["x"].shape == (540, 8, 8, 1) and z["y"].shape == (540,) and z["reference"].shape == (540, 10)


def test_input_model_file_is_never_modified(converted, model_h5):
    _, _, (sha, mtime) = converted
    assert sha256_file(model_h5) == sha
    assert model_h5.stat().st_mtime_ns == mtime


def test_rerun_into_the_same_folder_reuses_work_and_gives_the_same_records(converted, model_h5):
    manifest, out, _ = converted
    logs = []
    again = edgeopt.convert(str(model_h5), FULL_RECIPE, train="digits", calibration="digits", evaluation="digits",
                            out=out, progress=False, log=logs.append)
    assert [a.to_dict() for a in again.artifacts] == [a.to_dict() for a in manifest.artifacts]
    assert sum("reusing" in line for line in logs) == len(manifest.artifacts)
    # The second run is recorded; every record still names the first run, which made its file.
    assert [r["id"] for r in again.runs] == [manifest.runs[0]["id"], again.runs[-1]["id"]]
    assert {a.run for a in again.artifacts} == {manifest.runs[0]["id"]}
    assert again.of_run() == again.artifacts
