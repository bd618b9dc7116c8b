"""Every declared format/precision combination is produced, loads in its runtime, and passes its check."""

import pytest

from edgeopt import capabilities
from edgeopt.bench.device.runtimes import open_model

from .conftest import FULL_RECIPE, RECURRENT_RECIPE
from .test_auto_fallback import FALLBACK_RECIPE

COMBINATIONS = [(c.format, c.precision) for c in capabilities.CAPABILITIES]


def test_the_full_recipe_covers_every_declared_combination():
    # Adding a capability without adding it to the tested recipe fails here.
    covered = {(e["format"], e["precision"]) for e in FULL_RECIPE["exports"]}
    assert covered == set(COMBINATIONS)


def test_every_declared_option_value_is_converted_by_a_tested_recipe():
    # Declaring an option (or a value of one) that no tested recipe converts fails here. An option shared by
    # several exports (recurrent, calibration_method) runs one code path: one export per value covers it.
    from edgeopt.recipe import build_recipe

    exports = [e for r in (FULL_RECIPE, RECURRENT_RECIPE, FALLBACK_RECIPE) for e in build_recipe(r).exports]
    declared, used = {}, {}
    for cap in capabilities.CAPABILITIES:
        for name, (allowed, _, _) in cap.options.items():
            values = allowed if isinstance(allowed, tuple) else (True, False) if allowed is bool else ()
            declared.setdefault(name, set()).update(values)
    for e in exports:
        for name, value in e.options.items():
            used.setdefault(name, set()).add(value)
    missing = {name: sorted(map(str, values - used.get(name, set()))) for name, values in declared.items()}
    assert not {k: v for k, v in missing.items() if v}


@pytest.mark.parametrize("fmt,precision", COMBINATIONS, ids=[f"{f}-{p}" for f, p in COMBINATIONS])
def test_declared_export_is_produced_and_passes_its_check(converted, fmt, precision):
    manifest, out, _ = converted
    arts = [a for a in manifest.artifacts if a.format == fmt and a.precision == precision]
    assert arts, f"no {fmt}/{precision} artifact"
    for a in arts:
        assert a.status == "ok", a.error
        assert a.check["passed"] and a.check["samples"] == 540
        model = open_model(str(out / a.path))
        assert [o["shape"][1:] for o in model.output_specs] == [[10]]


@pytest.mark.parametrize("option,value", [
    ("io_type", "float32"), ("quant_format", "qoperator"), ("calibration_method", "entropy"), ("per_channel", False),
    ("backend", "ai-edge-quantizer"), ("weight_only", True), ("activations", "int16"),
    ("calibration_method", "moving_average"), ("io_type", "uint8"), ("allow_float_ops", True),
])
def test_non_default_options_get_their_own_named_artifact(converted, option, value):
    manifest, _, _ = converted
    matching = [a for a in manifest.artifacts if a.options.get(option) == value]
    assert matching and all(a.ok for a in matching)
    assert all(a.id.count(".") >= 3 for a in matching)  # a tag in the name, e.g. .qoperator.


def test_tflite_int8_io_types_follow_the_option(converted):
    manifest, _, _ = converted
    int8 = manifest.get("digits_cnn.pruned50.int8.tflite")
    float_io = manifest.get("digits_cnn.pruned50.int8.float32-io.tflite")
    assert int8.inputs[0]["dtype"] == "int8" and int8.inputs[0]["quantization"]["scale"] > 0
    assert int8.outputs[0]["quantization"] is not None
    assert float_io.inputs[0]["dtype"] == "float32" and float_io.inputs[0]["quantization"] is None


def test_onnx_static_int8_quantizes_every_conv_and_matmul(converted):
    manifest, _, _ = converted
    for a in manifest.artifacts:
        if a.format == "onnx" and a.precision == "int8":
            assert a.facts["float_compute_nodes"] == {}, a.id
            assert a.facts["quantized_compute_nodes"] >= 4
