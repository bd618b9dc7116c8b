"""The channel dependency graph of a tf_keras model: which channels must be removed together.

Every channel of every tensor gets an id; ids that must go together (a convolution's filter, the
BatchNorm and depthwise channels it feeds, the channel of the other branch it is added to) are
joined in a union-find. A class of joined ids is removed as a whole or not at all. Classes are
pinned (never removed) when they reach a model input or output, or a layer that mixes channels in a
way surgery cannot follow (see channel_layers). A group is the set of producer layers (convolutions,
dense layers) whose filters share classes: the unit a pruning fraction applies to.

Example:
    >>> graph = build(model)  # doctest: +SKIP
    >>> [(g.producers, len(g.removable)) for g in graph.groups()]  # doctest: +SKIP

Gotchas: works on the Keras graph (Sequential, Functional, nested models, shared layers), never on
code: a subclassed model has no graph to read and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf

from ..converter.keras_io import model_kind
from .channel_layers import ChannelPruningError, Rule, call_macs, depth_multiplier, rule_for

CONTAINERS = {"Sequential", "Functional", "Model"}


@dataclass
class Node:
    """One leaf layer: its channel ids (of its first call) and every call's shapes."""

    path: tuple
    layer: object
    rule: Rule
    inputs: list  # channel ids of each input tensor
    output: list  # channel ids of its output
    shapes: list = field(default_factory=list)  # (input shape, output shape) per call

    @property
    def name(self) -> str:
        return "/".join(self.path)


@dataclass
class Group:
    """Producers whose output channels are tied; `roots` are its channel classes, in producer order."""

    producers: list  # paths
    roots: list
    pinned: dict  # root -> why it must stay

    @property
    def removable(self) -> list:
        return [r for r in self.roots if r not in self.pinned]

    @property
    def key(self) -> str:
        return ",".join("/".join(p) for p in self.producers)


class ChannelGraph:
    def __init__(self):
        self.parent: list[int] = []
        self.pins: dict[int, str] = {}  # root -> reason
        self.nodes: dict[tuple, Node] = {}
        self.nested_inputs: dict[tuple, list] = {}  # (nested model path) -> channel ids of each inner input

    # ---- union-find over channel ids -------------------------------------------------------------
    def new_ids(self, n: int) -> list:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return list(range(start, start + n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def tie(self, a: list, b: list, where: str):
        if len(a) != len(b):
            raise ChannelPruningError(f"{where}: inputs with {len(a)} and {len(b)} channels cannot be tied")
        for x, y in zip(a, b):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[ry] = rx
                if ry in self.pins:
                    self.pins.setdefault(rx, self.pins.pop(ry))

    def pin(self, ids: list, reason: str):
        for i in ids:
            self.pins.setdefault(self.find(i), reason)

    def pinned(self, i: int) -> bool:
        return self.find(i) in self.pins

    # ---- groups and plans ------------------------------------------------------------------------
    def producers(self) -> list:
        return [n for n in self.nodes.values() if n.rule.kind == "producer"]

    def groups(self) -> list:
        """Producers joined by shared channel classes; each class listed once, in producer order."""
        owner = {}  # root -> index of the first producer holding it
        link = list(range(len(self.producers())))
        producers = self.producers()

        def top(i):
            while link[i] != i:
                i = link[i]
            return i

        for i, node in enumerate(producers):
            for c in node.output:
                r = self.find(c)
                if r in owner and top(owner[r]) != top(i):
                    link[top(i)] = top(owner[r])
                owner.setdefault(r, i)
        members = {}
        for i in range(len(producers)):
            members.setdefault(top(i), []).append(i)
        groups = []
        for idx in members.values():
            roots = list(dict.fromkeys(self.find(c) for i in idx for c in producers[i].output))
            groups.append(Group([producers[i].path for i in idx], roots,
                                {r: self.pins[r] for r in roots if r in self.pins}))
        return groups

    def kept(self, node: Node, removed: set) -> dict:
        """Positions kept on each side of `node` when the classes in `removed` go."""
        keep_in = [p for p, i in enumerate(node.inputs[0]) if self.find(i) not in removed] if node.inputs else []
        keep_out = [p for p, i in enumerate(node.output) if self.find(i) not in removed]
        m = depth_multiplier(node.layer)
        return {"in": keep_in, "out": keep_out, "mid": [p * m + k for p in keep_in for k in range(m)]}

    def macs(self, removed: set = frozenset()) -> dict:
        """Multiply-accumulates per leaf layer (batch 1) with the classes in `removed` gone."""
        out = {}
        for node in self.nodes.values():
            if not node.rule.macs:
                continue
            k = self.kept(node, removed)
            counts = {side: len(v) for side, v in k.items()} if node.rule.kind != "barrier" else None
            out[node.path] = sum(call_macs(node.layer, node.rule, i, o, counts) for i, o in node.shapes)
        return out


def build(model) -> ChannelGraph:
    """The channel graph of a Sequential or Functional tf_keras model; raise ChannelPruningError naming
    the first layer edgeopt cannot follow."""
    if model_kind(model) == "Subclassed" or not getattr(model, "_is_graph_network", False):
        raise ChannelPruningError(
            f"channel pruning needs a Sequential or Functional model, but {model.name!r} is a subclassed model "
            f"({type(model).__name__}): its call() is code, so there is no graph of channels to read. Rebuild it "
            "as a Functional model"
        )
    graph = ChannelGraph()
    inputs = []
    for t in model.inputs:
        ids = graph.new_ids(_channels(t, model.name))
        graph.pin(ids, f"the model input {t._keras_history.layer.name!r} keeps its shape")
        inputs.append(ids)
    outputs = _Walker(graph).model(model, (), inputs)
    for t, ids in zip(model.outputs, outputs):
        graph.pin(ids, f"the model output of {t._keras_history.layer.name!r} keeps its shape")
    return graph


class _Walker:
    def __init__(self, graph: ChannelGraph):
        self.graph = graph
        self.nested = {}  # id(nested model) -> (its inner input ids, its output ids)

    def model(self, model, prefix: tuple, input_ids: list) -> list:
        """Walk `model`'s graph with `input_ids` for its inputs; return the channel ids of its outputs."""
        ids = {id(t): i for t, i in zip(model.inputs, input_ids)}
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                ins = [ids[id(t)] for t in node.keras_inputs]
                outs = tf.nest.flatten(node.outputs)
                produced = self.call(node.layer, prefix, ins, [_shape(t) for t in node.keras_inputs], outs)
                for t, channel_ids in zip(outs, produced):
                    ids[id(t)] = channel_ids
        return [ids[id(t)] for t in model.outputs]

    def call(self, layer, prefix, ins, in_shapes, outs) -> list:
        path = prefix + (layer.name,)
        if type(layer).__name__ in CONTAINERS:
            return self.nested_call(layer, path, ins)
        if len(outs) != 1:
            raise ChannelPruningError(f"layer {layer.name!r} ({type(layer).__name__}) has {len(outs)} outputs; "
                                      "channel pruning follows single-output layers only")
        if not ins:
            raise ChannelPruningError(f"layer {layer.name!r} ({type(layer).__name__}) takes no tensor input")
        rule, reason = rule_for(layer, len(in_shapes[0]))
        out_channels = _channels(outs[0], layer.name)
        node = self.graph.nodes.get(path)
        if node is not None and rule.weights:
            for first, again in zip(node.inputs, ins):  # a shared layer: every call's channels go together
                self.graph.tie(first, again, f"layer {layer.name!r}")
        out = self.outputs(layer, rule, reason, ins, in_shapes, out_channels, node)
        if node is None:
            node = Node(path, layer, rule, ins, out)
            self.graph.nodes[path] = node
        node.shapes.append((in_shapes[0], _shape(outs[0])))
        return [out]

    def outputs(self, layer, rule, reason, ins, in_shapes, out_channels, node) -> list:
        g, kind, first = self.graph, rule.kind, ins[0]
        if kind == "producer":
            out = node.output if node else g.new_ids(out_channels)
            if reason:
                g.pin(out, f"{_label(layer)} keeps its outputs: {reason}")
            return out
        if kind == "barrier":
            for i in ins:
                g.pin(i, f"the channels into {_label(layer)} stay: {reason or 'it mixes channels'}")
            out = g.new_ids(out_channels)
            g.pin(out, f"the channels out of {_label(layer)} stay: {reason or 'it mixes channels'}")
            return out
        if kind == "depthwise":
            out = [c for c in first for _ in range(depth_multiplier(layer))]
        elif kind == "tie":
            full = [i for i in ins if len(i) == out_channels]  # a 1-channel input broadcasts: nothing to tie
            for other in full[1:]:
                g.tie(full[0], other, f"layer {layer.name!r}")
            out = full[0]
        elif kind == "concat":
            out = [c for i in ins for c in i]
        elif kind == "flatten":
            out = first * (out_channels // len(first))  # position s*C + c holds channel c
        else:  # per_channel, elementwise
            out = first
        if len(out) != out_channels:
            raise ChannelPruningError(
                f"layer {layer.name!r} ({type(layer).__name__}) makes {out_channels} channels from "
                f"{[len(i) for i in ins]}: not what a {kind} layer does, so edgeopt will not prune through it")
        return out

    def nested_call(self, model, path, ins) -> list:
        if model_kind(model) == "Subclassed" or not getattr(model, "_is_graph_network", False):
            raise ChannelPruningError(f"nested model {model.name!r} ({type(model).__name__}) is subclassed: "
                                      "its call() is code, so its channels cannot be followed")
        if id(model) not in self.nested:
            inner = [self.graph.new_ids(len(i)) for i in ins]
            self.graph.nested_inputs[path] = inner
            self.nested[id(model)] = (inner, None)
            self.nested[id(model)] = (inner, self.model(model, path, inner))
        inner, outs = self.nested[id(model)]
        for a, b in zip(inner, ins):
            self.graph.tie(a, b, f"nested model {model.name!r}")
        return outs


def _shape(t) -> list:
    return list(t.shape)


def _channels(t, where) -> int:
    n = t.shape[-1] if t.shape.rank else None
    if n is None:
        raise ChannelPruningError(f"a tensor of {where!r} has no fixed channel count (shape {list(t.shape)}): "
                                  "channel pruning needs the last axis known")
    return int(n)


def _label(layer) -> str:
    return f"{layer.name!r} ({type(layer).__name__})"
