"""`fallback: auto` (an int8 export option): a file that fails its check is made again with the fewest
layers kept in float, chosen by per-layer error, and the manifest says which and why.

The model is conftest's bad_layer_h5: layer `bad` has one channel with 1000x the others' range, so
plain int8 fails its check (the premise is asserted from the record of the first attempt).
"""

import pytest

import edgeopt
from edgeopt.errors import RecipeError

from .conftest import BAD_LAYER

COMPUTE_LAYERS = {"dense_a", BAD_LAYER, "logits"}  # `flatten` only moves data: it cannot stay float alone
FALLBACK_RECIPE = {"exports": [{"format": "tflite", "precision": "int8", "fallback": "auto"},
                               {"format": "onnx", "precision": "int8", "fallback": "auto"}]}


@pytest.fixture(scope="session")
def auto_fallback_run(bad_layer_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto-fallback")
    edgeopt.convert(bad_layer_h5, FALLBACK_RECIPE, calibration="digits", evaluation="digits", out=out, progress=False)
    return edgeopt.Manifest.load(out), out


def test_fallback_auto_fixes_the_broken_layer_with_the_fewest_float_layers(auto_fallback_run):
    manifest, out = auto_fallback_run
    int8 = [a for a in manifest.artifacts if a.precision == "int8"]
    assert {a.format for a in int8} == {"tflite", "onnx"}
    for a in int8:
        record = a.facts["fallback"]
        assert record["original"]["passed"] is False, a.id  # plain int8 of this model fails its check
        assert a.ok and a.check["passed"], a.error
        assert record["result"] == "passed" and record["kept_float"] == [BAD_LAYER, "logits"], record
        # Fewest: every single layer that can stay float was made and checked, and none passed alone.
        singles = [t for t in record["tries"] if len(t["layers"]) == 1]
        assert {t["layers"][0] for t in singles} == COMPUTE_LAYERS
        assert not any(t["passed"] for t in singles)
        assert record["per_layer"]["first_divergent_layer"] == BAD_LAYER
        assert f"'{BAD_LAYER}' added" in record["why"] and "every smaller set tried (3) still failed" in record["why"]
        assert f"'logits' reads the output of '{BAD_LAYER}'" in record["why"]
        assert any(BAD_LAYER in str(node) for node in record["selective"]["kept_float"])
        assert a.id.endswith(f".int8.fallback-auto.{a.format}") and (out / a.path).is_file()


@pytest.mark.parametrize("export, message", [
    ({"format": "tflite", "precision": "int8", "fallback": "always"}, "fallback='always' is not one of 'none', 'auto'"),
    ({"format": "onnx", "precision": "int8-dynamic", "fallback": "auto"}, "unknown option 'fallback'"),
])
def test_fallback_option_is_validated_before_any_work(bad_layer_h5, tmp_path, export, message):
    with pytest.raises(RecipeError) as e:
        edgeopt.convert(bad_layer_h5, {"exports": [export]}, calibration="digits", out=tmp_path / "out")
    assert message in str(e.value)


def test_candidate_sets_come_smallest_first_and_follow_each_worst_layer():
    from edgeopt.converter.auto_fallback import candidate_sets

    records = [{"layer": "a", "op": "FULLY_CONNECTED", "error_share": 0.1},
               {"layer": "pool", "op": "MAX_POOL_2D", "error_share": 0.0},
               {"layer": "b", "op": "FULLY_CONNECTED", "error_share": 0.8},
               {"layer": "c", "op": "FULLY_CONNECTED", "error_share": 0.0},
               {"layer": "d", "op": "FULLY_CONNECTED", "error_share": 0.1}]
    sets = candidate_sets(records)
    assert sets[0] == ["b"]  # the worst layer first
    assert [len(s) for s in sets] == sorted(len(s) for s in sets)
    assert ["b", "c"] in sets and not any("pool" in s for s in sets)  # the layer after the worst one is a candidate
    assert {x for s in sets for x in s} == {"a", "b", "c", "d"}


def test_an_export_that_cannot_be_searched_stays_failed_and_says_why(tmp_path):
    from edgeopt.converter.auto_fallback import Plan, apply
    from edgeopt.manifest import Artifact

    art = Artifact(id="m.int8.fallback-auto.tflite", path="m.int8.fallback-auto.tflite", format="tflite",
                   precision="int8", stage="tflite-convert", parent=None, status="failed",
                   error="check against the Keras model failed: output 0: cosine similarity 0.5 below 0.98",
                   check={"passed": False, "problems": ["output 0: cosine similarity 0.5 below 0.98"], "outputs": []})
    plan = Plan(None, None, ".tflite", False, [], not_searched="the model is traced at a fixed batch of 1")
    staged = tmp_path / "m.int8.fallback-auto.tflite.part"
    assert apply(plan, art, staged, [], inspect=None, stage=None, log=lambda *_: None) == staged
    assert art.status == "failed" and art.error.endswith("fallback: auto did not search: the model is traced at a "
                                                          "fixed batch of 1")
    assert art.facts["fallback"] == {"mode": "auto", "result": "not searched", "tries": [],
                                     "why": "the model is traced at a fixed batch of 1",
                                     "original": {"passed": False, "relative_max_error": None, "accuracy": None,
                                                  "top1_agreement": None,
                                                  "problems": ["output 0: cosine similarity 0.5 below 0.98"]}}
