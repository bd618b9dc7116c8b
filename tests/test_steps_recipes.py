"""The optimize: sequence as a recipe gives it: its written forms, the older prune: section and CLI flags,
and every mistake named before any work (table-driven)."""

import numpy as np
import pytest

import edgeopt
from edgeopt import data
from edgeopt.errors import ConversionError, DataError, RecipeError
from edgeopt.recipe import build_recipe, load_recipe

FP32 = {"exports": [{"format": "tflite", "precision": "fp32"}]}


def quiet(**kwargs):
    return {"progress": False, "log": lambda *_: None, **kwargs}


def test_a_step_may_be_written_as_a_name_a_mapping_or_with_step_beside_its_options():
    recipe = build_recipe({"optimize": ["prune", {"cluster": {"clusters": 8}}, {"step": "qat", "epochs": 3}]})
    assert [(e.step, e.where) for e in recipe.optimize] == [
        ("prune", "optimize[0].prune"), ("cluster", "optimize[1].cluster"), ("qat", "optimize[2].qat")]
    assert recipe.optimize[1].options["clusters"] == 8 and recipe.optimize[2].options["epochs"] == 3
    assert build_recipe(recipe.to_dict()).to_dict() == recipe.to_dict()  # the recorded recipe validates as is


def test_the_older_top_level_prune_is_a_prune_step_first():
    recipe = build_recipe({"prune": {"target_sparsity": 0.7}, "optimize": ["qat"]})
    assert [e.step for e in recipe.optimize] == ["prune", "qat"]
    assert recipe.optimize[0].options["target_sparsity"] == 0.7 and "prune" not in recipe.to_dict()


def test_after_qat_the_default_exports_are_the_ones_it_offers_and_calibration_is_optional():
    recipe = build_recipe({"optimize": ["qat"]})
    assert [(e.format, e.precision) for e in recipe.exports] == [("tflite", "int8"), ("onnx", "int8")]
    assert recipe.needs_calibration() == []


def test_teacher_auto_follows_the_distill_step_and_preserve_auto_follows_earlier_steps():
    steps = build_recipe({"optimize": [{"distill": {"teacher": "source"}}, "prune", "cluster", "qat"]}).steps()
    assert [p.teacher for p in steps] == ["source"] * 4
    assert steps[2].spec.preserve_sparsity is True and steps[3].spec.preserve == "sparsity+clusters"
    alone = build_recipe({"optimize": ["prune", "qat"]}).steps()
    assert [p.teacher for p in alone] == [None, None] and alone[1].spec.preserve == "sparsity"


def test_a_yaml_recipe_resolves_a_teacher_file_relative_to_itself(tmp_path, model_h5):
    (tmp_path / "teacher.h5").write_bytes(model_h5.read_bytes())
    (tmp_path / "r.yaml").write_text("optimize:\n  - {distill: {teacher: teacher.h5}}\n  - {step: qat, teacher: teacher.h5}\n")
    recipe = load_recipe(tmp_path / "r.yaml")
    assert [e.options["teacher"] for e in recipe.optimize] == [str(tmp_path / "teacher.h5")] * 2


@pytest.mark.parametrize("recipe,pattern", [
    ({"optimize": ["bogus"]}, r"optimize\[0\].bogus: unknown step 'bogus' \(valid steps: prune, cluster, qat, distill, channels\)"),
    ({"optimize": ["qat", "prune"]}, r"optimize\[0\].qat: qat must come last.*move prune before it"),
    ({"optimize": ["prune", {"distill": {"student": "ds_cnn"}}]}, r"distill builds a new model.*\(prune\).*put it first"),
    ({"optimize": ["cluster", "prune"]}, r"optimize\[1\].prune: pruning after clustering undoes the clusters"),
    ({"optimize": ["prune", "prune"]}, r"prune is listed twice"),
    ({"prune": {}, "optimize": ["prune"]}, r"prune is given both at the top level and in optimize"),
    ({"optimize": [{"cluster": {"clusters": 1}}]}, r"optimize\[0\].cluster.clusters: Input should be greater than or equal to 2"),
    ({"optimize": [{"cluster": {"centroids": 8}}]}, r"optimize\[0\].cluster.centroids: unknown field"),
    ({"optimize": [{"distill": {"teacher": "none"}}]}, r"distill needs a teacher"),
    ({"optimize": [{"distill": {"teacher": "missing.h5"}}]}, r"teacher: 'missing.h5' is neither auto, none, source, nor an existing model file"),
    ({"optimize": [{"distill": {"width": 0.25}}]}, r"width applies to a built student"),
    ({"optimize": [{"prune": {"m_by_n": "2:4", "block_size": [1, 4]}}]}, r"m_by_n and block_size are exclusive"),
    ({"optimize": [{"prune": {"patience": 2}}]}, r"optimize\[0\].prune: patience needs a validation_split"),
    ({"optimize": [{"qat": {"mixed_precision": True}}]}, r"mixed_precision does not apply to qat"),
    ({"optimize": ["qat"], "exports": [{"format": "tflite", "precision": "fp16"}]}, r"exports\[0\]: tflite/fp16 cannot follow qat"),
    ({"optimize": ["qat"], "exports": [{"format": "onnx", "precision": "int8", "per_channel": False}]},
     r"exports\[0\]: per_channel do not apply after qat"),
])
def test_sequence_mistakes_are_named_with_the_fix(recipe, pattern):
    with pytest.raises(RecipeError, match=pattern):
        build_recipe(recipe)


def test_every_problem_of_a_sequence_is_reported_at_once():
    with pytest.raises(RecipeError) as e:
        build_recipe({"optimize": ["qat", "bogus", {"cluster": {"clusters": 1}}]})
    assert len(e.value.problems) == 3


def test_a_layer_the_model_lacks_is_named_with_the_layers_it_has(model_h5, tmp_path):
    recipe = {"optimize": [{"prune": {"exclude": ["classifier"], "layer_targets": {"Conv3D": 0.5}}}], **FP32}
    with pytest.raises(ConversionError, match=r"'classifier', 'Conv3D' names no layer.*conv1 \(Conv2D\)"):
        edgeopt.convert(str(model_h5), recipe, train="digits", out=tmp_path, **quiet())
    assert not list(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize("train,pattern", [
    (data.Dataset(data.digits("train").x, None, "inputs only"),
     r"training data from inputs only has no labels \(y\), but optimize\[0\].prune trains on labels.*teacher: source"),
    ("synthetic", r"training data cannot be synthetic: optimize\[0\].prune trains on labels.*let those steps distil"),
])
def test_unlabelled_or_synthetic_training_data_names_the_choice(model_h5, tmp_path, train, pattern):
    with pytest.raises(DataError, match=pattern):
        edgeopt.convert(str(model_h5), {"optimize": ["prune"], **FP32}, train=train, out=tmp_path, **quiet())


def test_training_steps_without_training_data_are_refused_up_front(model_h5, tmp_path):
    with pytest.raises(RecipeError, match=r"optimize\[0\].prune, optimize\[1\].qat fine-tune the model, so training "
                                          r"data is needed"):
        edgeopt.convert(str(model_h5), {"optimize": ["prune", "qat"]}, out=tmp_path, **quiet())


def test_cli_flags_build_the_sequence():
    from edgeopt.cli import build_parser
    from edgeopt.cli.convert import _apply_flags

    args = build_parser().parse_args(["convert", "m.h5", "--optimize", "distill,qat", "--prune", "0.6"])
    recipe = build_recipe(_apply_flags({}, args))
    assert [e.step for e in recipe.optimize] == ["prune", "distill", "qat"]
    assert recipe.optimize[0].options["target_sparsity"] == 0.6
    args = build_parser().parse_args(["convert", "m.h5", "--prune", "0.3", "--prune-epochs", "2"])
    base = build_recipe({"optimize": [{"prune": {"target_sparsity": 0.9}}, "qat"]}).to_dict()
    recipe = build_recipe(_apply_flags(base, args))  # flags override the recipe's prune step in place
    assert [(e.step, e.options.get("target_sparsity"), e.options["epochs"]) for e in recipe.optimize][0] == ("prune", 0.3, 2)


def test_a_step_that_fails_is_recorded_and_the_exports_start_from_the_model_before_it(tmp_path):
    import tf_keras as keras

    # A Dense layer with 4 weights cannot be clustered into 8 values: tfmot refuses the step.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="tiny")], name="small")
    x = np.random.default_rng(0).random((64, 2), dtype=np.float32)
    recipe = {"optimize": [{"cluster": {"clusters": 8, "epochs": 1}}, {"qat": {"epochs": 1}}], **FP32,
              "exports": [{"format": "tflite", "precision": "int8"}]}
    manifest = edgeopt.convert(model, recipe, train=(x, x), calibration=x, evaluation=x, out=tmp_path, **quiet())
    cluster, qat, export = manifest.artifacts
    assert cluster.status == "failed" and "no selected layer tfmot can cluster with 8 clusters" in cluster.error
    assert qat.status == "skipped" and "optimize[0].cluster failed" in qat.error
    assert export.id == "small.int8.tflite" and export.parent is None


def test_every_centroid_initialisation_is_one_tfmot_has():
    import tensorflow_model_optimization as tfmot

    from edgeopt.steps.cluster import INITIALISATIONS, ClusterSpec

    assert set(INITIALISATIONS) == set(ClusterSpec.model_fields["init"].annotation.__args__)
    for name in INITIALISATIONS.values():
        assert hasattr(tfmot.clustering.keras.CentroidInitialization, name)
