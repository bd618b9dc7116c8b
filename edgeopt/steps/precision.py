"""Mixed precision for fine-tuning: a copy of the model whose layers compute in bfloat16 (weights stay
float32), and back to float32 for export. The layers that give the model's outputs stay float32, as
Keras' mixed-precision guide advises, so the loss is computed in float32.

Gotchas: a layer's dtype policy is fixed when it is built, so this rebuilds the model from its config
(tfmot wrappers included, under their scopes) and copies the weights.
"""

from __future__ import annotations

MIXED = "mixed_bfloat16"


def with_policy(model, policy):
    """A copy of `model` whose layers use dtype `policy` (float32 or mixed_bfloat16), weights copied."""
    config = model.get_config()
    outputs = {name for name, *_ in config.get("output_layers", [])}
    if type(model).__name__ == "Sequential":
        outputs = {config["layers"][-1]["config"]["name"]}
    _retype(config, policy, outputs)
    with _scopes():
        copy = type(model).from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _retype(config, policy, outputs):
    """Every layer's dtype in a (nested) model config becomes `policy`, except inputs and output layers."""
    for layer in config.get("layers", []):
        cfg = layer.get("config", {})
        if layer.get("class_name") == "InputLayer" or cfg.get("name") in outputs:
            continue
        _set_dtype(cfg, policy)


def _set_dtype(cfg, policy):
    if "dtype" in cfg:
        cfg["dtype"] = policy
    inner = cfg.get("layer")  # tfmot wrappers nest the real layer's config
    if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
        _set_dtype(inner["config"], policy)
    if "layers" in cfg:  # a nested model
        _retype(cfg, policy, set())


def _scopes():
    import contextlib

    import tensorflow_model_optimization as tfmot

    stack = contextlib.ExitStack()
    stack.enter_context(tfmot.quantization.keras.quantize_scope())
    stack.enter_context(tfmot.clustering.keras.cluster_scope())
    stack.enter_context(tfmot.sparsity.keras.prune_scope())
    return stack
