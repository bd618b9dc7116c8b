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


def test_unpruned_exports_are_converted_once_without_sparse_facts(trained_model, tmp_path):
    import edgeopt

    manifest = edgeopt.convert(trained_model, {"exports": [{"format": "tflite", "precision": "fp32"}]},
                               out=tmp_path, progress=False, log=lambda *a: None)
    assert "sparse_encoding" not in (manifest.artifacts[0].facts or {})
