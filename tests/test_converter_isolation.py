"""Native converters run in a process of their own: a real crash costs one file, and every export reads one trace."""

import numpy as np
import pytest

import edgeopt
from edgeopt import data
from edgeopt.converter.isolation import ConverterCrash, ConverterProcess
from edgeopt.converter.serving import Serving

TFLITE = "edgeopt.converter.tflite:convert_saved_model"


def quiet(**kwargs):
    return {"progress": False, "log": lambda *_: None, **kwargs}


def with_inf(n=40):
    """Digits with one infinite pixel: TFLite's int8 calibrator dies of it (SIGSEGV) in tensorflow 2.21."""
    x = data.digits("train").x[0][:n].copy()
    x[3, 2, 2, 0] = np.inf
    return data.Dataset([x], None, "digits with inf")


def test_a_calibrator_crash_fails_that_step_and_the_next_runs_in_a_fresh_process(trained_model):
    with Serving(trained_model) as serving, ConverterProcess() as converters:
        saved_model = str(serving.saved_model())
        # Past the up-front finite check, straight into the calibrator: a real SIGSEGV, not a mock.
        with pytest.raises(ConverterCrash, match=r"TFLite int8 conversion crashed the converter process "
                                                 r"\(SIGSEGV: Segmentation fault\)\. the hint\. The other exports "
                                                 r"are unaffected") as crash:
            converters.call(TFLITE, saved_model, "int8", {"io_type": "int8"}, with_inf(), 1,
                            what="TFLite int8 conversion", crash_hint="the hint")
        assert crash.value.signal_name == "SIGSEGV"
        blob = converters.call(TFLITE, saved_model, "fp32", {}, None, 1, what="TFLite fp32 conversion")
        assert blob[4:8] == b"TFL3" and converters.starts == 2


def test_a_hung_step_is_stopped_at_its_timeout_and_the_process_restarts():
    with ConverterProcess() as converters:
        converters.call("time:sleep", 0, what="warm-up")  # the first call waits for the imports, not timed here
        converters.timeout_s = 1
        with pytest.raises(ConverterCrash, match=r"a long sleep did not finish in 1s and was stopped"):
            converters.call("time:sleep", 60, what="a long sleep")
        converters.timeout_s = 600
        assert converters.call("math:hypot", 3, 4, what="arithmetic") == 5.0 and converters.starts == 2


def test_exceptions_in_the_converter_process_are_raised_in_the_caller_with_its_traceback():
    with ConverterProcess() as converters:
        with pytest.raises(ValueError, match="math domain error") as caught:
            converters.call("math:sqrt", -1, what="a square root")
        assert "in the converter process" in "".join(caught.value.__notes__)


def test_a_crash_in_a_run_fails_one_file_while_the_other_exports_finish_and_are_recorded(
        model_h5, tmp_path, monkeypatch):
    # The up-front check refuses this data; bypassed here, the crash must still stay inside its process.
    monkeypatch.setattr(edgeopt.data, "check_finite", lambda ds, role: ds)
    exports = [{"format": "tflite", "precision": "fp32"}, {"format": "tflite", "precision": "int8"},
               {"format": "onnx", "precision": "fp32"}, {"format": "tflite", "precision": "fp16"},
               {"format": "onnx", "precision": "int8"}]
    manifest = edgeopt.convert(str(model_h5), {"exports": exports}, calibration=with_inf(), evaluation="digits",
                               out=tmp_path, **quiet())
    statuses = {a.id: a.status for a in manifest.artifacts}
    assert statuses == {"digits_cnn.fp32.tflite": "ok", "digits_cnn.int8.tflite": "failed",
                        "digits_cnn.fp32.onnx": "ok", "digits_cnn.fp16.tflite": "ok", "digits_cnn.int8.onnx": "failed"}
    # A failed record still says how `int8_variant: auto` was resolved: the search finds its candidate by it.
    onnx_int8 = manifest.get("digits_cnn.int8.onnx")
    assert onnx_int8.facts["int8_variant"]["asked"] == "auto", (onnx_int8.facts, onnx_int8.error)
    crashed = manifest.get("digits_cnn.int8.tflite")
    assert "crashed the converter process (SIGSEGV" in crashed.error and "int8 calibrator" in crashed.error
    on_disk = edgeopt.Manifest.load(tmp_path)
    assert [a.id for a in on_disk.artifacts] == [a.id for a in manifest.artifacts]


def two_headed_model():
    """Two inputs, two outputs of different widths whose names sort against their order (z before a)."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    image, extra = keras.Input((8, 8, 1), name="image"), keras.Input((3,), name="extra")
    h = keras.layers.Concatenate()([keras.layers.Flatten()(image), extra])
    z = keras.layers.Dense(5, name="z_scores")(h)
    a = keras.layers.Dense(2, name="a_flag")(keras.layers.Dense(4, activation="relu")(h))
    return keras.Model([image, extra], [z, a], name="two_headed")


def test_inputs_and_outputs_keep_their_keras_names_and_are_checked_by_name(tmp_path):
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(0, 1, (16, 8, 8, 1)).astype(np.float32), rng.uniform(0, 1, (16, 3)).astype(np.float32)]
    exports = [{"format": "tflite", "precision": "fp32"}, {"format": "onnx", "precision": "fp32"}]
    manifest = edgeopt.convert(two_headed_model(), {"exports": exports}, evaluation=inputs, out=tmp_path, **quiet())
    tflite, onnx = manifest.get("two_headed.fp32.tflite"), manifest.get("two_headed.fp32.onnx")
    assert tflite.status == "ok" and onnx.status == "ok", (tflite.error, onnx.error)
    # ONNX keeps the Keras order; a TFLite file lists its signature sorted by name, and is fed and read by name.
    assert [(o["name"], o["shape"][1:]) for o in onnx.outputs] == [("z_scores", [5]), ("a_flag", [2])]
    assert [i["name"] for i in onnx.inputs] == ["image", "extra"]
    assert [(o["name"], o["shape"][1:]) for o in tflite.outputs] == [("a_flag", [2]), ("z_scores", [5])]
    assert [i["name"] for i in tflite.inputs] == ["extra", "image"]
    assert tflite.check["max_abs_error"] < 1e-4 and onnx.check["max_abs_error"] < 1e-4


def test_onnx_node_names_are_those_of_the_keras_layers(converted):
    import onnx

    _, out, _ = converted
    names = [n.name for n in onnx.load(str(out / "digits_cnn.pruned50.fp32.onnx")).graph.node]
    assert any(name.startswith("digits_cnn/conv1/") for name in names), names
    assert not any("PartitionedCall" in name for name in names), names


def test_static_int8_onnx_files_share_one_calibration_and_match_a_fresh_one(converted, tmp_path):
    from edgeopt.converter import onnx_quant

    manifest, out, _ = converted
    facts = {a.id: a.facts for a in manifest.artifacts if a.stage == "onnx-quantize" and a.precision == "int8"}
    assert facts["digits_cnn.pruned50.int8.onnx"]["calibration_reused"] is False  # the first minmax file
    assert facts["digits_cnn.pruned50.int8.per-tensor.onnx"]["calibration_reused"] is True
    assert facts["digits_cnn.pruned50.int8.entropy.qoperator.onnx"]["calibration_reused"] is False  # other method
    calibration = data.digits("train").take(50)
    fp32 = out / "digits_cnn.pruned50.fp32.onnx"
    onnx_quant.quantize_static(fp32, calibration, {"quant_format": "qdq"}, cache_dir=tmp_path)
    shared, facts = onnx_quant.quantize_static(fp32, calibration, {"quant_format": "qoperator"}, cache_dir=tmp_path)
    fresh, _ = onnx_quant.quantize_static(fp32, calibration, {"quant_format": "qoperator"})
    assert facts["calibration_reused"] is True and shared == fresh


def test_calibration_in_chunks_gives_the_single_pass_ranges(converted, monkeypatch):
    """ORT's calibrators hold every intermediate tensor of the samples they are given; edgeopt gives them 16 at a
    time (a MobileNetV2-224 at 500 samples went from an OOM kill at 24 GB to 1.9 GB). Min/max merge exactly;
    histograms (entropy) by ORT's own merge, which re-bins: some scales move (0-10% in the runs seen), the
    predictions do not."""
    import onnx
    from onnx import numpy_helper

    from edgeopt.converter import onnx_quant

    assert [onnx_quant.calibration_stride(n) for n in (500, 64, 101, 7, 1, 0)] == [10, 16, 1, 7, 1, 1]
    _, out, _ = converted
    fp32, calibration = out / "digits_cnn.pruned50.fp32.onnx", data.digits("train").take(96)

    def scales(blob):
        graph = onnx.load_from_string(blob).graph
        return {t.name: float(numpy_helper.to_array(t)) for t in graph.initializer
                if t.name.endswith("_scale") and numpy_helper.to_array(t).size == 1}

    files = {}
    for chunk in (16, 10_000):  # in chunks (6 of 16), and in one pass as ORT alone does it
        monkeypatch.setattr(onnx_quant, "CALIBRATION_CHUNK", chunk)
        for method in ("minmax", "entropy"):
            files[chunk, method] = onnx_quant.quantize_static(fp32, calibration, {"calibration_method": method})[0]
    assert files[16, "minmax"] == files[10_000, "minmax"]
    chunked, single = scales(files[16, "entropy"]), scales(files[10_000, "entropy"])
    assert chunked.keys() == single.keys() and len(single) >= 5
    ratios = {k: chunked[k] / single[k] for k in single}
    assert all(0.8 < r < 1.25 for r in ratios.values()), ratios
    evaluation = data.digits("evaluation")
    top1 = [top1_of(files[16, "entropy"], evaluation), top1_of(files[10_000, "entropy"], evaluation)]
    assert (top1[0] == top1[1]).mean() >= 0.99


def top1_of(blob, ds):
    import onnxruntime as ort

    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: ds.x[0][i:i + 64]})[0] for i in range(0, len(ds), 64)]).argmax(1)
