"""What each Keras layer does to the channels (last axis) flowing through it, and how to slice its weights.

The channel-pruning graph (channel_graph.py) asks one question of every layer: which output channels
come from which input channels. The answers, per layer class:

- producer: makes new channels from all of its input channels (Conv*, Dense, SeparableConv*, and
  Embedding from token ids): its filters may be removed, and its weights lose the input channels
  removed upstream.
- depthwise: channel c of the input makes channels c*m .. c*m+m-1 of the output (DepthwiseConv*).
- per_channel: one output channel per input channel, with per-channel weights (BatchNormalization, PReLU).
- elementwise: one output channel per input channel, no weights (activations, pooling, padding, dropout).
- tie: the inputs' channels are added/multiplied position by position, so they are removed together.
- concat: the output's channels are the inputs' channels one after the other.
- flatten: each spatial position repeats the channels; the next Dense sees channel c at s*C + c.
- barrier: mixes channels in a way surgery cannot follow (Reshape, Permute, Softmax, LayerNormalization):
  its input channels are kept, and its output channels are new and kept.
Anything else is unknown: the step stops and names the layer (never a silent guess).

Gotchas: channels_first layers and grouped convolutions are barriers; so is a Reshape or an
activation whose meaning depends on other channels (softmax).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..converter.anatomy import RECURRENT
from ..errors import ConversionError


class ChannelPruningError(ConversionError):
    """A model (or one of its layers) cannot be pruned by channels; the message names the layer."""


# Weight slicing: weight name -> {axis: side}. "in": positions of the layer's input channel list;
# "out": of its output list; "mid": of the depthwise stage inside a separable convolution.
_CONV = {"kernel": {-2: "in", -1: "out"}, "bias": {0: "out"}}
_CONV_TRANSPOSE = {"kernel": {-1: "in", -2: "out"}, "bias": {0: "out"}}
_SEPARABLE = {"depthwise_kernel": {-2: "in"}, "pointwise_kernel": {-2: "mid", -1: "out"}, "bias": {0: "out"}}
_DEPTHWISE = {"depthwise_kernel": {-2: "in"}, "bias": {0: "out"}}
_BATCHNORM = {name: {0: "in"} for name in ("gamma", "beta", "moving_mean", "moving_variance")}


@dataclass(frozen=True)
class Rule:
    kind: str  # producer, depthwise, per_channel, elementwise, tie, concat, flatten, barrier
    weights: dict | None = None  # weight name -> {axis: side}
    size_key: str | None = None  # config key holding a producer's number of output channels
    macs: dict | None = None  # weight name -> the spatial extent it is applied over: "out" or "in"


_OUT, _IN = {"kernel": "out"}, {"kernel": "in"}
_PRODUCERS = {
    **{c: Rule("producer", _CONV, "filters", _OUT) for c in ("Conv1D", "Conv2D", "Conv3D")},
    **{c: Rule("producer", _CONV_TRANSPOSE, "filters", _IN)
       for c in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")},
    **{c: Rule("producer", _SEPARABLE, "filters", {"depthwise_kernel": "out", "pointwise_kernel": "out"})
       for c in ("SeparableConv1D", "SeparableConv2D")},
    # A Dense layer on a sequence or an image applies its kernel at every position of its input.
    "Dense": Rule("producer", {"kernel": {0: "in", 1: "out"}, "bias": {0: "out"}}, "units", _IN),
    # Its input is token ids, not channels (they stay with the model input); its vectors are its channels.
    "Embedding": Rule("producer", {"embeddings": {1: "out"}}, "output_dim"),
}
_ELEMENTWISE = [
    "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "RepeatVector",
    "Resizing", "CenterCrop", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomCrop",
    "RandomContrast", "RandomBrightness", "RandomHeight", "RandomWidth", "Rescaling",
]
RULES = {
    **_PRODUCERS,
    **{c: Rule("elementwise") for c in _ELEMENTWISE},
    **{c: Rule("depthwise", _DEPTHWISE, macs={"depthwise_kernel": "out"})
       for c in ("DepthwiseConv1D", "DepthwiseConv2D")},
    "BatchNormalization": Rule("per_channel", _BATCHNORM),
    "PReLU": Rule("per_channel", {"alpha": {-1: "in"}}),
    **{c: Rule("tie") for c in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")},
    "Concatenate": Rule("concat"),
    "Flatten": Rule("flatten"),
    "InputLayer": Rule("elementwise"),  # only met inside a nested Sequential: it passes its tensor on
    **{c: Rule("barrier") for c in ("Reshape", "Permute", "Softmax", "LayerNormalization", "UnitNormalization",
                                     "GroupNormalization", "Normalization")},
}
# Activations that read other channels: the channels feeding them must stay.
_CROSS_CHANNEL_ACTIVATIONS = {"softmax", "log_softmax"}


def rule_for(layer, rank: int) -> tuple[Rule, str | None]:
    """(the rule for `layer`, a reason when an option pins channels), or raise naming the layer.

    `rank` is the rank of the layer's (first) input, batch included. With a reason, a barrier keeps
    its input channels, and a producer keeps its output channels (a Dense with a softmax).
    """
    cls = type(layer).__name__
    if cls == "Activation":
        activation = _name(layer.activation)
        if activation in _CROSS_CHANNEL_ACTIVATIONS:
            return Rule("barrier"), f"its {activation} activation reads every channel"
        return Rule("elementwise"), None
    rule = RULES.get(cls)
    if rule is None:
        why = ("it is recurrent: its state mixes channels across time steps, which channel pruning does not follow"
               if cls in RECURRENT else "edgeopt does not know how it maps its input channels to its outputs, "
               "so it will not guess")
        raise ChannelPruningError(
            f"layer {layer.name!r} ({cls}) cannot be pruned by channels: {why}. Replace or remove that layer, or "
            "use unstructured pruning (`prune:`) for this model. Supported: convolutions (Conv1D/2D/3D, "
            "transposed, depthwise, separable), Dense, Embedding, BatchNormalization, PReLU, activations, pooling, "
            "padding, cropping, upsampling, dropout, Add/Subtract/Multiply/Average/Maximum/Minimum, Concatenate, "
            "Flatten, and Reshape/Permute/Softmax/LayerNormalization with their channels kept"
        )
    return _option_barrier(layer, rule, rank)


def _option_barrier(layer, rule, rank):
    """Options that move the channels off the last axis, or mix them, pin them."""
    config = layer.get_config()
    if config.get("data_format") == "channels_first":
        return Rule("barrier", rule.weights, None, rule.macs), "it is channels_first"
    if rule.kind == "producer" and config.get("groups", 1) != 1:
        why = f"it is a grouped convolution (groups={config['groups']})"
        return Rule("barrier", rule.weights, None, rule.macs), why
    if rule.kind == "concat" and config.get("axis", -1) not in (-1, rank - 1):
        return Rule("tie"), None  # concatenated along another axis: every input has the same channels
    if type(layer).__name__ == "BatchNormalization" and list(layer.axis) not in ([-1], [rank - 1]):
        return Rule("barrier"), f"it normalises axis {list(layer.axis)}, not the channels"
    if type(layer).__name__ == "Rescaling" and not all(
            isinstance(config.get(k, 0), (int, float)) for k in ("scale", "offset")):
        return Rule("barrier"), "it rescales each channel by its own factor"
    if type(layer).__name__ == "PReLU" and layer.alpha.shape[-1] == 1:
        return Rule("elementwise"), None  # alpha shared across channels: nothing to slice
    if rule.kind == "producer" and config.get("activation") in _CROSS_CHANNEL_ACTIVATIONS:
        return rule, f"its {config['activation']} activation reads every channel"
    return rule, None


def _name(fn):
    return getattr(fn, "__name__", str(fn))


def depth_multiplier(layer) -> int:
    return int(getattr(layer, "depth_multiplier", 1) or 1)


def weight_short_name(weight) -> str:
    """'block_1_expand/kernel:0' -> 'kernel'."""
    return weight.name.split("/")[-1].split(":")[0]


def call_macs(layer, rule: Rule, in_shape, out_shape, kept: dict | None) -> int:
    """Multiply-accumulates of one call at batch 1, counted as edgeopt.bench.graph counts exported files
    (convolutions and dense layers). `kept`: channels kept per side ("in", "out", "mid"), None for as built.
    """
    if not rule.macs:
        return 0
    channels_first = layer.get_config().get("data_format") == "channels_first"
    extent = {"out": _spatial(out_shape, channels_first), "in": _spatial(in_shape, channels_first)}
    total = 0
    for weight in layer.weights:
        name = weight_short_name(weight)
        if name not in rule.macs:
            continue
        shape = list(weight.shape)
        for axis, side in (rule.weights.get(name, {}) if kept else {}).items():
            shape[axis] = kept[side]
        total += extent[rule.macs[name]] * prod(shape)
    return total


def _spatial(shape, channels_first) -> int:
    dims = shape[2:] if channels_first else shape[1:-1]
    return prod(d or 1 for d in dims)
