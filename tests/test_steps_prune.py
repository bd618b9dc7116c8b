"""Pruning as a step: layers chosen by name or class, per-layer targets, block sparsity; measured, not assumed."""

import pytest

import edgeopt

RECIPE = {
    "name": "sel",
    "optimize": [{"prune": {"target_sparsity": 0.5, "layers": ["conv2", "Dense"], "layer_targets": {"logits": 0.25},
                            "block_size": [1, 4], "epochs": 1}}],
    "exports": [{"format": "tflite", "precision": "fp32"}],
}


@pytest.fixture(scope="module")
def pruned(model_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("prune-selection")
    manifest = edgeopt.convert(str(model_h5), RECIPE, train="digits", evaluation="digits", out=out,
                               progress=False, log=lambda *_: None)
    return manifest.get("sel.pruned50.keras")


def test_layers_are_chosen_by_name_and_by_class(pruned):
    assert pruned.status == "ok", pruned.error
    assert set(pruned.facts["result"]["layers"]) == {"conv2", "fc", "logits"}  # conv1 was not chosen
    assert set(pruned.sparsity["layers"]) == {"conv2", "fc", "logits"}


def test_each_layer_reaches_its_own_target(pruned):
    layers = pruned.sparsity["layers"]
    assert layers["conv2"]["sparsity"] >= 0.49 and layers["fc"]["sparsity"] >= 0.49
    # 10 output columns are 3 blocks of 4 (the last padded), so a quarter of the blocks is fewer weights.
    assert 0.245 <= layers["logits"]["block_sparsity"] < 0.3 and 0.2 < layers["logits"]["sparsity"] < 0.3
    assert pruned.facts["result"]["layers"]["logits"]["target"] == 0.25


def test_blocks_apply_to_dense_kernels_and_are_kept_whole(pruned):
    plan, layers = pruned.facts["result"]["layers"], pruned.sparsity["layers"]
    assert plan["fc"]["block_size"] == [1, 4] and plan["conv2"]["block_size"] == [1, 1]  # tfmot blocks 2-D kernels
    assert layers["fc"]["block_compliance"] == 1.0 and layers["logits"]["block_compliance"] == 1.0
    assert "block_compliance" not in layers["conv2"]
