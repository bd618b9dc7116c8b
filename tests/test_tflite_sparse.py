"""Unstructured pruning: TFLite files are sparse-encoded when that makes them smaller, and still run."""

from edgeopt.bench.device.runtimes import open_model


def _artifact(manifest, fmt, precision, **options):
    return next(a for a in manifest.artifacts if a.format == fmt and a.precision == precision
                and all(a.options.get(k) == v for k, v in options.items()))


def test_pruned_fp32_tflite_is_sparse_encoded_when_smaller_and_passes_its_check(converted):
    manifest, out, _ = converted
    art = _artifact(manifest, "tflite", "fp32")
    facts = art.facts["sparse_encoding"]
    assert art.ok and facts["used"] is True
    assert art.size_bytes == facts["sparse_bytes"] < facts["dense_bytes"]
    assert "DENSIFY" in open_model(str(out / art.path)).ops(), "the runtime expands the weights at load"


def test_int8_tflite_keeps_the_dense_encoding_when_sparse_would_be_larger(converted):
    manifest, out, _ = converted
    art = _artifact(manifest, "tflite", "int8", io_type="int8")
    facts = art.facts["sparse_encoding"]
    assert art.ok and facts["used"] is False
    assert art.size_bytes == facts["dense_bytes"] < facts["sparse_bytes"]
    assert "DENSIFY" not in open_model(str(out / art.path)).ops()


def test_sparse_file_that_litert_cannot_run_is_not_kept(trained_model):
    """At 90% sparsity a sparse int8 file is smaller, but XNNPACK (LiteRT's default) cannot prepare it."""
    import numpy as np

    from edgeopt import data
    from edgeopt.converter.keras_io import tf_keras
    from edgeopt.converter.serving import Serving
    from edgeopt.converter.tflite_sparse import convert_smallest, worth_trying

    model = tf_keras().models.clone_model(trained_model)
    weights = [np.where(np.abs(w) < np.quantile(np.abs(w), 0.9), 0, w) if w.ndim > 1 else w
               for w in trained_model.get_weights()]
    model.set_weights(weights)
    assert worth_trying(model) and not worth_trying(trained_model), "tried for sparse weights, whoever pruned them"
    calibration = data.digits("train").take(32)
    with Serving(model) as serving:
        fp32, fp32_facts = convert_smallest(serving, "fp32", {}, calibration)
        int8, int8_facts = convert_smallest(serving, "int8", {"io_type": "int8"}, calibration)
    assert fp32_facts["sparse_encoding"]["used"] is True and len(fp32) == fp32_facts["sparse_encoding"]["sparse_bytes"]
    facts = int8_facts["sparse_encoding"]
    assert facts["sparse_bytes"] < facts["dense_bytes"] == len(int8)
    assert facts["used"] is False and "LiteRT cannot run it" in facts["why"]


def test_unpruned_exports_are_converted_once_without_sparse_facts(trained_model, tmp_path):
    import edgeopt

    manifest = edgeopt.convert(trained_model, {"exports": [{"format": "tflite", "precision": "fp32"}]},
                               out=tmp_path, progress=False, log=lambda *a: None)
    assert "sparse_encoding" not in (manifest.artifacts[0].facts or {})
