"""ai-edge-quantizer as a second TFLite backend: a pass over the fp32 file, recorded, checked, and as exact as
TFLiteConverter once its calibration takes the min/max over all samples."""

import numpy as np
import pytest

from edgeopt.bench.device.runtimes import open_model

STEM = "digits_cnn.pruned50"


def artifact(manifest, suffix):
    art = manifest.get(f"{STEM}.{suffix}")
    assert art is not None, [a.id for a in manifest.artifacts]
    return art


def test_aeq_files_are_a_pass_over_the_fp32_tflite_file(converted):
    manifest, _, _ = converted
    fp32 = artifact(manifest, "fp32.tflite")
    for suffix, recipe in [("int8.aeq.tflite", "static_wi8_ai8"), ("int8.16x8.aeq.int16-io.tflite", "static_wi8_ai16"),
                           ("int8-dynamic.aeq.tflite", "dynamic_wi8_afp32"),
                           ("int8-dynamic.aeq.weight-only.tflite", "weight_only_wi8_afp32")]:
        art = artifact(manifest, suffix)
        assert (art.stage, art.parent, art.status) == ("tflite-quantize", fp32.id, "ok"), art.error
        assert art.facts["recipe"] == recipe and art.facts["tool"].startswith("ai-edge-quantizer 0.10")
        assert art.facts["aeq_recipe"][0]["algorithm_key"] == "min_max_uniform_quantize"
        # The pruned parent is sparse-encoded, which ai-edge-quantizer misreads: it quantizes a dense conversion.
        assert fp32.facts["sparse_encoding"]["used"] and "converted dense" in art.facts["quantized_from"]


def test_aeq_int8_takes_int8_tensors_whose_quantization_litert_reports(converted, digits):
    manifest, out, _ = converted
    art = artifact(manifest, "int8.aeq.tflite")
    model = open_model(str(out / art.path))
    spec = model.input_specs[0]
    assert spec["dtype"] == "int8" and spec["quantization"]["scale"] > 0
    assert model.output_specs[0]["dtype"] == "int8" and model.output_specs[0]["quantization"]["scale"] > 0
    x = digits["evaluation"].x[0][:4]
    q = spec["quantization"]
    expected = np.clip(np.round(x / q["scale"]) + q["zero_point"], -128, 127).astype(np.int8)
    np.testing.assert_array_equal(model.encode([x])[0], expected)  # the harness and checks quantize the inputs


def test_aeq_int8_with_minmax_ranges_is_as_accurate_as_tfliteconverter(converted):
    manifest, _, _ = converted
    aeq, tflc = artifact(manifest, "int8.aeq.tflite"), artifact(manifest, "int8.tflite")
    assert aeq.facts["calibration"] == {"method": "minmax", "samples": 200, "mode": "profiler-based",
                                        "merge": "running min/max"}
    assert aeq.check["max_abs_error"] <= 1.5 * tflc.check["max_abs_error"]
    assert aeq.check["top1_agreement"] >= tflc.check["top1_agreement"] - 0.01


def activation_scales(path) -> dict:
    """Tensor name -> scale of each per-tensor int8 tensor (activations; weights are per channel)."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return {t["name"]: float(t["quantization_parameters"]["scales"][0]) for t in details
            if t["dtype"] == np.int8 and len(t["quantization_parameters"]["scales"]) == 1}


def test_the_moving_average_calibrates_narrower_ranges_than_the_samples_span(converted):
    """Why ai-edge-quantizer's own default lost accuracy: each range is a moving average of per-sample extremes."""
    manifest, out, _ = converted
    ema = artifact(manifest, "int8.aeq.moving-average.float32-io.tflite")
    assert ema.facts["calibration"]["merge"] == "moving average (0.95)"
    full = activation_scales(out / artifact(manifest, "int8.aeq.tflite").path)
    averaged = activation_scales(out / ema.path)
    shared = full.keys() & averaged.keys()
    assert len(shared) >= 4, (sorted(full), sorted(averaged))
    assert all(full[k] >= averaged[k] * (1 - 1e-6) for k in shared)
    assert sum(full[k] > 1.05 * averaged[k] for k in shared) >= 3  # clipped activations


def test_int16_activations_take_int16_tensors_and_say_where_they_run(converted):
    manifest, out, _ = converted
    art = artifact(manifest, "int8.16x8.aeq.int16-io.tflite")
    model = open_model(str(out / art.path))
    assert model.input_specs[0]["dtype"] == "int16" and model.input_specs[0]["quantization"]["zero_point"] == 0
    assert "reference kernels" in art.facts["note"]


def test_weight_only_keeps_float_inputs_and_dequantizes_weights(converted):
    manifest, out, _ = converted
    art = artifact(manifest, "int8-dynamic.aeq.weight-only.tflite")
    model = open_model(str(out / art.path), xnnpack=False)
    assert model.input_specs[0]["dtype"] == "float32"
    assert "DEQUANTIZE" in model.ops()
    assert art.size_bytes < 0.5 * artifact(manifest, "fp32.tflite").size_bytes


@pytest.mark.parametrize("export,pattern", [
    ({"activations": "int16", "io_type": "int16"}, r"activations='int16' needs backend='ai-edge-quantizer'"),
    ({"calibration_method": "moving_average"}, r"moving_average' needs backend='ai-edge-quantizer'.*always takes min/max"),
    ({"backend": "ai-edge-quantizer", "activations": "int16"}, r"needs io_type='int16' or 'float32', got 'int8'"),
    ({"backend": "ai-edge-quantizer", "io_type": "uint8"}, r"ai-edge-quantizer writes no uint8 I/O"),
    ({"backend": "tflite-converter", "io_type": "int16"}, r"activations='int8' needs io_type='int8' or 'uint8'"),
    ({"backend": "aeq"}, r"backend='aeq' is not one of 'tflite-converter', 'ai-edge-quantizer'"),
    ({"recurrent": "sideways"}, r"recurrent='sideways' is not one of 'auto', 'loop'"),
])
def test_option_combinations_the_tools_cannot_make_are_refused_with_the_fix(export, pattern):
    from edgeopt.errors import RecipeError
    from edgeopt.recipe import build_recipe

    with pytest.raises(RecipeError, match=pattern):
        build_recipe({"exports": [{"format": "tflite", "precision": "int8", **export}]})


def test_weight_only_needs_ai_edge_quantizer():
    from edgeopt.errors import RecipeError
    from edgeopt.recipe import build_recipe

    with pytest.raises(RecipeError, match=r"weight_only=True needs backend='ai-edge-quantizer'.*no weight-only"):
        build_recipe({"exports": [{"format": "tflite", "precision": "int8-dynamic", "weight_only": True}]})
