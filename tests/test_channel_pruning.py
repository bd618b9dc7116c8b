"""The channel-pruning step: criteria, targets, schedules, distillation, records, errors, Keras 3."""

import numpy as np
import pytest

from edgeopt.errors import DataError, RecipeError
from edgeopt.steps import channel_graph
from edgeopt.steps.channels import ChannelPruningError, ChannelPruneSpec, keep_count, prune_channels
from tests import channel_models

QUIET = {"progress": False, "log": lambda *a: None}


def _accuracy(model, ds):
    return float(np.mean(np.argmax(model.predict(ds.x[0], verbose=0), -1) == ds.y))


@pytest.fixture(scope="session")
def pruned_30(trained_model, digits):
    return prune_channels(trained_model, {"target": 0.3, "epochs": 6}, digits["train"], **QUIET)


def test_fine_tuned_digits_cnn_keeps_its_accuracy_at_30_percent(trained_model, digits, pruned_30):
    smaller, record = pruned_30
    dense = _accuracy(trained_model, digits["evaluation"])
    assert _accuracy(smaller, digits["evaluation"]) >= dense - 0.02
    assert record["channels"]["after"] < record["channels"]["before"]
    assert 0.4 < record["macs"]["ratio"] < 0.6, "30% fewer channels in and out of conv2: about half the MACs"
    assert record["layers"]["conv2"]["channels_after"] == round(64 * 0.7)


def test_record_lists_per_layer_channels_macs_and_params(pruned_30, trained_model):
    smaller, record = pruned_30
    conv2 = record["layers"]["conv2"]
    assert len(conv2["removed"]) == conv2["channels_before"] - conv2["channels_after"]
    assert conv2["params_after"] == smaller.get_layer("conv2").count_params()
    assert conv2["macs_after"] < conv2["macs_before"]
    assert record["params"]["before"] == trained_model.count_params()
    assert record["pinned"][0]["layers"] == "logits", "the output layer keeps its 10 classes"
    assert record["steps"][0]["surgery_check"]["max_abs_error"] <= record["steps"][0]["surgery_check"]["limit"]


def test_pruned_model_saves_and_loads_like_any_keras_model(pruned_30, tmp_path):
    from edgeopt.converter.keras_io import tf_keras

    smaller, _ = pruned_30
    smaller.save(tmp_path / "pruned.keras")
    again = tf_keras().models.load_model(tmp_path / "pruned.keras", compile=False)
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(again(x), smaller(x), atol=1e-6)


def test_l1_removes_the_filters_with_the_smallest_weights():
    model = channel_models.build("conv2d")
    kernel, bias = model.get_layer("c1").get_weights()
    scale = np.arange(1, 9, dtype=np.float32)[::-1]  # filter 7 smallest, then 6, 5, 4
    model.get_layer("c1").set_weights([np.abs(kernel) * scale, bias])
    _, record = prune_channels(model, {"target": 0.5, "criterion": "l1", "epochs": 0}, None, **QUIET)
    assert record["layers"]["c1"]["removed"] == [4, 5, 6, 7]


def test_bn_scale_removes_the_channels_with_the_smallest_batchnorm_scale():
    model = channel_models.build("batchnorm")
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    gamma = np.array([5, 0.1, 4, 3, 0.2, 6, 0.3, 0.01], np.float32)
    model.get_layer("bn").set_weights([gamma, beta, mean, var])
    _, record = prune_channels(model, {"target": 0.5, "criterion": "bn_scale", "epochs": 0}, None, **QUIET)
    assert record["layers"]["c1"]["removed"] == [1, 4, 6, 7]


def test_taylor_ranks_a_dead_filter_last(trained_model, digits):
    from edgeopt.converter.keras_io import tf_keras

    model = tf_keras().models.clone_model(trained_model)
    model.set_weights(trained_model.get_weights())
    kernel, bias = model.get_layer("conv1").get_weights()
    kernel[..., 3], bias[3] = 0.0, 0.0  # a filter whose loss gradient x weight is exactly zero
    model.get_layer("conv1").set_weights([kernel, bias])
    _, record = prune_channels(model, {"target": 0.05, "criterion": "taylor", "epochs": 0}, "digits", **QUIET)
    assert 3 in record["layers"]["conv1"]["removed"]


def test_mac_budget_is_met_with_the_fewest_channels_removed(trained_model):
    _, record = prune_channels(trained_model, {"target": {"macs": 0.4}, "epochs": 0}, None, **QUIET)
    assert record["macs"]["ratio"] <= 0.4
    assert record["macs"]["ratio"] > 0.3, "the fraction is the smallest that meets the budget, not far past it"


def test_unreachable_mac_budget_says_why():
    model = channel_models.build("conv2d")
    with pytest.raises(ChannelPruningError, match="cannot be met"):
        prune_channels(model, {"target": {"macs": 0.001}, "epochs": 0}, None, **QUIET)


def test_round_to_keeps_multiples_and_layers_limits_the_groups():
    model = channel_models.cached("small_mobilenet_v2")
    spec = {"target": 0.3, "epochs": 0, "round_to": 8, "layers": ["block_*_expand", "Conv1"]}
    smaller, record = prune_channels(model, spec, None, **QUIET)
    changed = {name: layer for name, layer in record["layers"].items() if layer.get("removed")}
    assert changed and all(name.endswith("_expand") or name == "Conv1" for name in changed)
    assert all(layer["channels_after"] % 8 == 0 or layer["channels_after"] == layer["channels_before"]
               for layer in changed.values())
    assert smaller.get_layer("block_2_project").filters == model.get_layer("block_2_project").filters


@pytest.mark.parametrize("n,fraction,round_to,minimum,want", [
    (64, 0.3, 1, 1, 45), (64, 0.3, 8, 1, 48), (10, 0.95, 1, 2, 2), (5, 0.5, 8, 1, 5), (32, 0.5, 1, 1, 16),
])
def test_keep_count_rounds_and_bounds(n, fraction, round_to, minimum, want):
    spec = ChannelPruneSpec(target=fraction, round_to=round_to, min_channels=minimum, epochs=0)
    assert keep_count(n, fraction, spec) == want


def test_gradual_schedule_prunes_in_steps_to_the_target(trained_model, digits):
    spec = {"target": 0.5, "schedule": "gradual", "steps": 2, "epochs": 2, "criterion": "l2"}
    smaller, record = prune_channels(trained_model, spec, digits["train"], **QUIET)
    assert [s["fraction"] for s in record["steps"]] == [0.25, 0.5]
    assert [s["fine_tune_epochs"] for s in record["steps"]] == [1, 1]
    assert record["layers"]["conv2"]["channels_after"] == 32
    assert len(record["layers"]["conv2"]["removed"]) == 32, "indices refer to the original filters"
    assert max(record["layers"]["conv2"]["removed"]) < 64


def test_distillation_fine_tunes_towards_the_original(trained_model, digits, tmp_path):
    spec = {"target": 0.5, "epochs": 2, "distill": True}
    smaller, record = prune_channels(trained_model, spec, digits["train"], **QUIET)
    assert record["spec"]["distill"] is True
    assert _accuracy(smaller, digits["evaluation"]) > 0.8
    smaller.save(tmp_path / "distilled.keras")  # compiled with the task loss again, so it saves plainly


def test_a_supplied_fine_tune_is_called_with_the_epochs(trained_model, digits):
    calls = []

    def fine_tune(model, train, epochs, *, teacher=None):
        calls.append((epochs, teacher is trained_model))
        return model

    prune_channels(trained_model, {"target": 0.3, "epochs": 3, "distill": True}, digits["train"],
                   fine_tune=fine_tune, **QUIET)
    assert calls == [(3, True)]


BAD_SPECS = [
    ({"target": 1.5}, "between 0 and 1"),
    ({"target": {"macs": 2}}, "macs"),
    ({"schedule": "gradual", "steps": 4, "epochs": 2}, "epochs must be at least 4"),
    ({"criterion": "random"}, "criterion"),
    ({"distill": True, "epochs": 0}, "needs epochs of at least 1"),
    ({"targte": 0.3}, "targte"),
]


@pytest.mark.parametrize("spec,message", BAD_SPECS, ids=[m for _, m in BAD_SPECS])
def test_bad_spec_is_refused_naming_the_field(spec, message):
    with pytest.raises(RecipeError, match=message):
        prune_channels(channel_models.build("dense"), spec, None, **QUIET)


def test_fine_tuning_without_labels_asks_for_them():
    with pytest.raises(DataError, match="labels"):
        prune_channels(channel_models.build("dense"), {"target": 0.3, "epochs": 2}, None, **QUIET)


def _tflite_macs(model, tmp_path):
    import tensorflow as tf

    from edgeopt.bench.graph import describe

    path = tmp_path / f"{model.name}.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return describe(path, "tflite")["macs"]


@pytest.mark.parametrize("name", ["conv2d", "depthwise", "separable", "conv1d", "flatten_dense", "add"])
def test_mac_count_matches_the_exported_file_before_and_after(name, tmp_path):
    model = channel_models.cached(name)
    smaller, record = prune_channels(model, {"target": 0.5, "epochs": 0}, None, **QUIET)
    assert record["macs"]["before"] == _tflite_macs(model, tmp_path)
    assert record["macs"]["after"] == _tflite_macs(smaller, tmp_path)


def test_keras3_model_is_pruned_through_the_bridge():
    from edgeopt.converter.keras_io import keras3, tf_keras

    k3 = keras3()
    x = k3.Input((8, 8, 3))
    y = k3.layers.Conv2D(8, 3, activation="relu", name="c1")(x)
    y = k3.layers.BatchNormalization(name="bn")(y)
    y = k3.layers.Dense(4, name="out")(k3.layers.GlobalAveragePooling2D()(y))
    model = k3.Model(x, y)
    smaller, record = prune_channels(model, {"target": 0.5, "epochs": 0}, None, **QUIET)
    assert isinstance(smaller, tf_keras().Model)
    assert record["bridge"]["bridge"] == "keras3->tf_keras"
    assert record["layers"]["c1"]["channels_after"] == 4
    assert list(smaller.outputs[0].shape) == [None, 4]


def test_graph_groups_tie_the_branches_of_an_add():
    graph = channel_graph.build(channel_models.build("add"))
    keys = {g.key for g in graph.groups()}
    assert "a,b,gate" in keys, "the Add and the Multiply tie a, b and the gate's channels"


def test_model_with_a_fixed_batch_is_checked_at_that_batch():
    keras = channel_models.tf_keras()
    x = keras.Input((6,), batch_size=4)
    model = keras.Model(x, keras.layers.Dense(2, name="out")(keras.layers.Dense(8, name="d1")(x)))
    smaller, record = prune_channels(channel_models.randomise(model), {"target": 0.5, "epochs": 0}, None, **QUIET)
    assert record["steps"][0]["surgery_check"]["samples"] == 4
    assert list(smaller.inputs[0].shape) == [4, 6]
