"""Parity between a target's outputs and the local CPU's: fp within a magnitude-scaled tolerance, int8 within 2 LSB.

Real outputs: the converter-made digits models run through the local runner; the "other target" is
the same outputs moved by known amounts.
"""

import json
import re
import shutil

import numpy as np
import pytest

from edgeopt.bench.parity import artifact_parity, bundle_parity, compare, load_outputs, output_scales
from edgeopt.bench.targets import LocalTarget

from .bundles import make_bundle, outputs_of

ARTIFACTS = ["digits_cnn.pruned50.fp32.tflite", "digits_cnn.pruned50.fp16.tflite", "digits_cnn.pruned50.int8.tflite",
             "digits_cnn.pruned50.int8.float32-io.tflite", "digits_cnn.pruned50.int8-dynamic.onnx",
             "digits_cnn.pruned50.fp32.onnx", "digits_cnn.pruned50.int8.onnx"]


@pytest.fixture(scope="module")
def local_run(converted, digits, tmp_path_factory):
    manifest, out, _ = converted
    folder = tmp_path_factory.mktemp("parity") / "local"
    make_bundle(folder, [out / a for a in ARTIFACTS], digits["evaluation"].x[0][:64])
    LocalTarget().run(folder, timeout=300)
    return manifest, out, folder


def _precision(manifest):
    return lambda job_id: manifest.get(job_id).precision


def test_the_same_outputs_are_at_parity_for_every_artifact(local_run, tmp_path):
    manifest, _, folder = local_run
    twin = tmp_path / "twin"
    shutil.copytree(folder, twin)
    parity = bundle_parity(folder, twin, _precision(manifest))
    assert sorted(parity) == sorted(ARTIFACTS)
    for job_id, figures in parity.items():
        assert figures["verdict"] == "ok" and figures["max_abs_diff"] == 0 and figures["top1_agreement"] == 1, job_id


def test_int8_scales_come_from_output_specs_or_the_final_dequantize(local_run):
    _, out, folder = local_run
    specs = {m["id"]: m["outputs"] for m in json.loads((folder / "results.json").read_text())["measurements"]}
    int8_io = output_scales(out / "digits_cnn.pruned50.int8.tflite", specs["digits_cnn.pruned50.int8.tflite"])
    float_io = output_scales(out / "digits_cnn.pruned50.int8.float32-io.tflite", None)
    onnx_qdq = output_scales(out / "digits_cnn.pruned50.int8.onnx", None)
    assert int8_io == [specs["digits_cnn.pruned50.int8.tflite"][0]["quantization"]["scale"]]
    for scales in (float_io, onnx_qdq):
        assert len(scales) == 1 and 0.001 < scales[0] < 1
    assert output_scales(out / "digits_cnn.pruned50.int8-dynamic.onnx", None) == [None]
    assert output_scales(out / "digits_cnn.pruned50.fp32.tflite", None) == [None]


@pytest.mark.parametrize("artifact,precision,lsb_moved,verdict", [
    ("digits_cnn.pruned50.int8.tflite", "int8", 2, "ok"),
    ("digits_cnn.pruned50.int8.tflite", "int8", 3, "differs"),
    ("digits_cnn.pruned50.int8.onnx", "int8", 2, "ok"),
    ("digits_cnn.pruned50.int8.onnx", "int8", 3, "differs"),
])
def test_int8_outputs_are_compared_in_lsb(local_run, artifact, precision, lsb_moved, verdict):
    _, out, folder = local_run
    (y,) = load_outputs(outputs_of(folder, artifact))
    (scale,) = output_scales(out / artifact, None if artifact.endswith(".onnx") else _specs(folder, artifact))
    moved = y.copy()
    moved[0, 0] += lsb_moved * scale
    figures = compare([y], [moved], precision, [scale])
    assert figures["verdict"] == verdict
    assert figures["lsb"] == pytest.approx(lsb_moved, abs=1e-3)


@pytest.mark.parametrize("precision,relative_error,verdict", [
    ("fp32", 5e-6, "ok"),      # what ARM vs x86 float kernels give (see the ARM emulation notes)
    ("fp32", 1e-4, "differs"),
    ("fp16", 5e-4, "ok"),
    ("fp16", 5e-3, "differs"),
])
def test_float_outputs_are_compared_relative_to_their_magnitude(local_run, precision, relative_error, verdict):
    _, _, folder = local_run
    artifact = f"digits_cnn.pruned50.{precision}.tflite"
    (y,) = load_outputs(outputs_of(folder, artifact))
    moved = y.copy()
    moved[3, 2] += relative_error * np.abs(y).max()
    figures = compare([y], [moved], precision)
    assert figures["verdict"] == verdict, figures["rule"]
    assert figures["relative_diff"] == pytest.approx(relative_error, rel=1e-2)  # float32 rounding


def test_int8_dynamic_uses_an_8_bit_grid_over_the_output_range(local_run):
    _, out, folder = local_run
    artifact = "digits_cnn.pruned50.int8-dynamic.onnx"
    (y,) = load_outputs(outputs_of(folder, artifact))
    grid = (y.max() - y.min()) / 255
    assert compare([y], [y + 1.5 * grid], "int8-dynamic")["verdict"] == "ok"
    assert compare([y], [y + 2.5 * grid], "int8-dynamic")["verdict"] == "differs"


@pytest.mark.parametrize("other,reason", [
    ([np.zeros((64, 10)), np.zeros((64, 10))], "1 outputs locally, 2 on the target"),
    ([np.zeros((63, 10))], r"shape \(64, 10\) locally, \(63, 10\) on the target"),
])
def test_mismatched_outputs_fail_with_the_reason(other, reason):
    figures = compare([np.zeros((64, 10))], other, "fp32")
    assert figures["verdict"] == "failed"
    assert re.search(reason, figures["reason"])


def test_artifact_parity_reads_saved_outputs(local_run):
    manifest, out, folder = local_run
    npz = outputs_of(folder, "digits_cnn.pruned50.int8.onnx")
    figures = artifact_parity(npz, npz, "int8", out / "digits_cnn.pruned50.int8.onnx")
    assert figures["verdict"] == "ok" and figures["lsb"] == 0


def _specs(folder, artifact):
    return next(m["outputs"] for m in json.loads((folder / "results.json").read_text())["measurements"]
                if m["id"] == artifact)
