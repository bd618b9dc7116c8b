"""Channel surgery: rebuild a tf_keras model without some channel classes, and prove the result.

The new model comes from the original's config with smaller filter/unit counts (nested models
included), and every weight is the original's with the removed positions sliced out. The proof:
the original with every removed weight set to zero must give the new model's outputs (to float
round-off), because a channel whose weights are all zero contributes nothing.

Example:
    >>> smaller = remove_channels(model, graph, removed)  # doctest: +SKIP
    >>> verify(model, smaller, graph, removed, [x])  # doctest: +SKIP

Gotchas: the input model is never modified; layer names, input and output shapes stay the same.
"""

from __future__ import annotations

import copy

import numpy as np

from .channel_graph import CONTAINERS, ChannelGraph
from .channel_layers import ChannelPruningError, weight_short_name

# Float32 round-off over a few hundred ops stays far below this (relative to the output's scale).
_PROOF_TOLERANCE = 1e-4


def remove_channels(model, graph: ChannelGraph, removed: set):
    """A new, smaller model without the channel classes in `removed` (roots of `graph`)."""
    pinned = [r for r in removed if r in graph.pins]
    if pinned:
        raise ChannelPruningError(f"internal error: {len(pinned)} pinned channel classes were chosen for removal")
    keeps = {path: graph.kept(node, removed) for path, node in graph.nodes.items()}
    config = copy.deepcopy(model.get_config())
    _edit(config, (), graph, removed, keeps)
    try:
        smaller = type(model).from_config(config)
    except Exception as e:  # tf_keras rejects the edited config: our bug, said plainly
        raise ChannelPruningError(
            f"rebuilding {model.name!r} with fewer channels failed: {type(e).__name__}: {e}") from e
    _copy_weights(model, smaller, graph, keeps, _slice)
    return smaller


def zeroed_copy(model, graph: ChannelGraph, removed: set):
    """A copy of `model` (same shapes) whose weights that `remove_channels` would drop are set to zero."""
    keeps = {path: graph.kept(node, removed) for path, node in graph.nodes.items()}
    twin = type(model).from_config(copy.deepcopy(model.get_config()))
    _copy_weights(model, twin, graph, keeps, _zero)
    return twin


def verify(original, smaller, graph: ChannelGraph, removed: set, inputs: list) -> dict:
    """Compare the smaller model with the zeroed original on `inputs`; raise unless they agree."""
    shapes = [[list(t.shape) for t in m.inputs] for m in (original, smaller)]
    if shapes[0] != shapes[1]:
        raise ChannelPruningError(f"internal error: the pruned model takes inputs {shapes[1]}, not {shapes[0]}")
    twin = zeroed_copy(original, graph, removed)
    want, got = _outputs(twin, inputs), _outputs(smaller, inputs)
    worst, limit = 0.0, 0.0
    for w, g in zip(want, got):
        if w.shape != g.shape:
            raise ChannelPruningError(f"internal error: the pruned model's output has shape {g.shape}, not {w.shape}")
        worst = max(worst, float(np.max(np.abs(w.astype(np.float64) - g))))
        limit = max(limit, _PROOF_TOLERANCE * max(1.0, float(np.max(np.abs(w)))))
    if not worst <= limit:
        raise ChannelPruningError(
            f"internal error: the pruned {original.name!r} differs from the original with the removed channels "
            f"zeroed (max abs error {worst:.3g}, limit {limit:.3g}): the surgery is wrong, so nothing was kept")
    return {"max_abs_error": worst, "limit": limit, "samples": int(len(inputs[0]))}


def _edit(config, prefix, graph, removed, keeps):
    """Set each producer's new channel count, and each nested model's new input shapes, in `config`."""
    for i, entry in enumerate(config["layers"]):
        name = entry.get("name") or entry["config"]["name"]
        path = prefix + (name,)
        if entry["class_name"] in CONTAINERS:
            _edit(entry["config"], path, graph, removed, keeps)
            _edit_nested_inputs(entry["config"], graph.nested_inputs.get(path), graph, removed)
        elif path in keeps and graph.nodes[path].rule.size_key:
            node = graph.nodes[path]
            entry["config"][node.rule.size_key] = len(keeps[path]["out"])


def _edit_nested_inputs(config, inner_ids, graph, removed):
    if not inner_ids:
        return
    counts = [sum(graph.find(c) not in removed for c in ids) for ids in inner_ids]
    names = [n[0] for n in config.get("input_layers", [])]
    if not names:  # a Sequential: its InputLayer is the first entry, or its build shape holds the input
        names = [e["config"]["name"] for e in config["layers"][:1] if e["class_name"] == "InputLayer"]
        if config.get("build_input_shape"):
            config["build_input_shape"] = list(config["build_input_shape"][:-1]) + [counts[0]]
    for name, n in zip(names, counts):
        entry = next(e for e in config["layers"] if (e.get("name") or e["config"]["name"]) == name)
        shape = entry["config"]["batch_input_shape"]
        entry["config"]["batch_input_shape"] = list(shape[:-1]) + [n]


def _copy_weights(source, target, graph, keeps, transform):
    for path, old, new in _leaf_pairs(source, target, ()):
        if not old.weights:
            continue
        keep = keeps.get(path)
        rule_weights = (graph.nodes[path].rule.weights or {}) if keep else {}
        values = []
        for w in old.weights:
            v = w.numpy()
            axes = rule_weights.get(weight_short_name(w), {}) if keep else {}
            values.append(transform(v, axes, keep) if axes else v)
        try:
            new.set_weights(values)
        except ValueError as e:
            raise ChannelPruningError(
                f"internal error: weights of layer {old.name!r} do not fit after surgery: {e}") from e


def _slice(value, axes, keep):
    for axis, side in axes.items():
        value = np.take(value, keep[side], axis=axis)
    return value


def _zero(value, axes, keep):
    value = value.copy()
    for axis, side in axes.items():
        mask = np.ones(value.shape[axis], bool)
        mask[keep[side]] = False
        index = [slice(None)] * value.ndim
        index[axis] = mask
        value[tuple(index)] = 0
    return value


def _leaf_pairs(source, target, prefix):
    """(path, layer in source, same layer in target) for every non-model layer, nested ones included."""
    for old in source.layers:
        new = target.get_layer(old.name)
        path = prefix + (old.name,)
        if type(old).__name__ in CONTAINERS:
            yield from _leaf_pairs(old, new, path)
        else:
            yield path, old, new


def _outputs(model, inputs, batch=8) -> list:
    """Outputs in small eager batches: no predict() retracing per new model, little memory at 224x224.

    A model whose input declares a fixed batch is called at that batch.
    """
    batch = model.inputs[0].shape[0] or batch
    parts = []
    for start in range(0, len(inputs[0]), batch):
        xs = [x[start:start + batch] for x in inputs]
        out = model(xs if len(xs) > 1 else xs[0], training=False)
        parts.append([np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
    return [np.concatenate(chunks) for chunks in zip(*parts)]


def count_params(model) -> dict:
    """Parameters per leaf layer path (nested models' layers included)."""
    return {path: int(layer.count_params()) for path, layer, _ in _leaf_pairs(model, model, ())}

