"""How much each channel class matters: the criteria a channel-pruning step ranks by.

- l1 / l2: the norm of the filters that make the channel (Li et al. 2017, "Pruning Filters for
  Efficient ConvNets"), summed over the producers tied in a group.
- bn_scale: |gamma| of the BatchNormalization layers on the channel (Liu et al. 2017, "Network
  Slimming"); a group without BatchNorm falls back to l1, and the record says so.
- taylor: the first-order Taylor estimate of the loss change when the channel goes, (sum of
  gradient x weight over the channel's parameters)^2 averaged over batches of training data
  (Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning").

Each layer's scores are divided by their mean before being summed into a class, so every layer tied
in a group has an equal say whatever its weight scale (as torch-pruning's default normaliser does).
Written here rather than taken from a library: tfmot prunes weights, not channels, and no Keras
library ranks channel classes of a dependency graph.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .channel_graph import ChannelGraph
from .channel_layers import weight_short_name

_FILTER_WEIGHTS = {"kernel", "pointwise_kernel", "embeddings"}  # the weights that make a producer's channels
_TAYLOR_SAMPLES, _TAYLOR_BATCH = 256, 32


def importance(model, graph: ChannelGraph, criterion: str, train=None, loss=None) -> tuple[dict, list]:
    """({class root: score}, notes) for every class of every producer in `graph`."""
    if criterion in ("l1", "l2"):
        return _filter_norms(graph, criterion), []
    if criterion == "bn_scale":
        return _bn_scale(graph)
    if criterion == "taylor":
        return _taylor(model, graph, train, loss), []
    raise ValueError(f"unknown criterion {criterion!r}")


def _add(scores, graph, ids, values):
    mean = float(np.mean(values)) if len(values) else 0.0
    for i, v in zip(ids, values):
        r = graph.find(i)
        scores[r] = scores.get(r, 0.0) + (float(v) / mean if mean > 0 else 0.0)


def _filter_norms(graph, criterion) -> dict:
    scores = {}
    for node in graph.producers():
        for w in node.layer.weights:
            name = weight_short_name(w)
            axes = node.rule.weights.get(name, {})
            if name not in _FILTER_WEIGHTS:
                continue
            out_axis = next(a for a, side in axes.items() if side == "out")
            v = np.moveaxis(w.numpy(), out_axis, -1).reshape(-1, w.shape[out_axis])
            norms = np.abs(v).sum(0) if criterion == "l1" else np.sqrt((v * v).sum(0))
            _add(scores, graph, node.output, norms)
    return scores


def _bn_scale(graph) -> tuple[dict, list]:
    scores = {}
    for node in graph.nodes.values():
        if type(node.layer).__name__ == "BatchNormalization" and node.rule.kind == "per_channel" and node.layer.scale:
            _add(scores, graph, node.inputs[0], np.abs(node.layer.gamma.numpy()))
    fallback, notes = _filter_norms(graph, "l1"), []
    for group in graph.groups():
        if not any(r in scores for r in group.roots):
            notes.append(f"group {group.key}: no BatchNormalization scale, ranked by l1")
            scores.update({r: fallback.get(r, 0.0) for r in group.roots})
    return scores, notes


def _taylor(model, graph, train, loss) -> dict:
    import tensorflow as tf

    if train is None or train.y is None:
        raise DataError("the taylor criterion needs training data with labels (it takes gradients of the loss); "
                        "pass train data, or use criterion l1, l2 or bn_scale")
    sample = train.take(_TAYLOR_SAMPLES)
    tracked = _taylor_weights(graph)
    variables = [w for w, _, _ in tracked]
    totals = {}
    for start in range(0, len(sample), _TAYLOR_BATCH):
        xs = [x[start:start + _TAYLOR_BATCH] for x in sample.x]
        with tf.GradientTape() as tape:
            out = model(xs if len(xs) > 1 else xs[0], training=False)
            value = loss(sample.y[start:start + _TAYLOR_BATCH], out)
        grads = tape.gradient(value, variables)
        batch = {}
        for (w, axis, ids), g in zip(tracked, grads):
            if g is None:
                continue
            gw = np.moveaxis((g * w).numpy(), axis, -1).reshape(-1, w.shape[axis]).sum(0)
            for i, v in zip(ids, gw):
                r = graph.find(i)
                batch[r] = batch.get(r, 0.0) + float(v)
        for r, v in batch.items():
            totals[r] = totals.get(r, 0.0) + v * v
    n_batches = max(1, -(-len(sample) // _TAYLOR_BATCH))
    scores = {}
    for node in graph.producers():  # normalised per producer, like the other criteria
        roots = [graph.find(i) for i in node.output]
        _add(scores, graph, node.output, np.array([totals.get(r, 0.0) / n_batches for r in roots]))
    return scores


def _taylor_weights(graph) -> list:
    """(variable, channel axis, channel ids along it) for every weight that belongs to one channel."""
    tracked = []
    for node in graph.nodes.values():
        if node.rule.kind not in ("producer", "depthwise", "per_channel"):
            continue
        for w in node.layer.trainable_weights:
            for axis, side in node.rule.weights.get(weight_short_name(w), {}).items():
                own = side == "out" if node.rule.kind == "producer" else side in ("in", "out")
                if own:
                    ids = node.output if side == "out" else node.inputs[0]
                    tracked.append((w, axis, ids))
    return tracked
