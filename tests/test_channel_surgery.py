"""Channel surgery without training: removing channels whose weights are zero changes no output.

Two forms of the same fact, on every supported layer kind and model structure:
- through the public step: the test zeroes whole filters by hand (and the BatchNorm / depthwise
  weights of those channels), prunes with the l1 criterion (zero filters rank last), and the smaller
  model's outputs equal the zeroed original's;
- through the graph: any removable half of every group is cut, and the outputs equal those of the
  original with every weight the surgery dropped set to zero.
"""

import hashlib

import numpy as np
import pytest

from edgeopt.steps import channel_graph, channel_surgery
from edgeopt.steps.channels import ChannelPruningError, prune_channels
from tests import channel_models

QUIET = {"progress": False, "log": lambda *a: None}


def _outputs(model, x):
    return np.asarray(model(x, training=False))


def _assert_same_outputs(want, got):
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)


def _weights_hash(model):
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(channel_models.BUILDERS))
def test_removing_zeroed_channels_keeps_outputs_on_every_structure(name):
    model = channel_models.cached(name)
    x = channel_models.inputs(model)
    graph = channel_graph.build(model)
    rng = np.random.default_rng(0)
    removed = set()
    for group in graph.groups():
        candidates = group.removable
        removed |= set(rng.choice(candidates, len(candidates) // 2, replace=False).tolist()) if candidates else set()
    assert removed, "every test model has channels to remove"

    smaller = channel_surgery.remove_channels(model, graph, removed)
    zeroed = channel_surgery.zeroed_copy(model, graph, removed)

    _assert_same_outputs(_outputs(zeroed, x), _outputs(smaller, x))
    assert not np.allclose(_outputs(zeroed, x), _outputs(model, x)), "the removed channels mattered before zeroing"
    assert [list(t.shape) for t in smaller.inputs] == [list(t.shape) for t in model.inputs]
    assert [list(t.shape) for t in smaller.outputs] == [list(t.shape) for t in model.outputs]
    assert smaller.count_params() < model.count_params()
    assert sum(graph.macs(removed).values()) < sum(graph.macs().values())


def _zero_filters(model, channels):
    """Zero every weight of the listed output channels: filters, biases, BatchNorm scale and shift, depthwise."""
    for layer_name, idx in channels.items():
        layer = model.get_layer(layer_name)
        values = []
        for w in layer.weights:
            v = w.numpy().copy()
            short = w.name.split("/")[-1].split(":")[0]
            if short in ("kernel", "bias", "gamma", "beta", "pointwise_kernel"):
                v[..., idx] = 0.0
            elif short == "depthwise_kernel":
                v[..., idx, :] = 0.0
            values.append(v)
        layer.set_weights(values)
    return model


# (model, {layer: channels zeroed by hand}, fraction removed): every producer of a group loses the same
# channels; BatchNorm and depthwise layers on those channels are zeroed too, so the zeros reach the next layer.
HAND_ZEROED = [
    ("conv2d", {"c1": [0, 3, 5, 6], "c2": [1, 4, 5]}, 0.5),
    ("conv1d", {"c1": [2, 3, 7, 1], "c2": [0, 5, 2]}, 0.5),
    ("dense", {"d1": [0, 1, 2, 3, 4, 5, 6, 7], "d2": [11, 3, 4, 7, 0, 9]}, 0.5),
    ("batchnorm", {"c1": [1, 2, 6, 7], "bn": [1, 2, 6, 7], "c2": [0, 1, 2], "bn2": [0, 1, 2]}, 0.5),
    ("separable", {"c1": [0, 7, 3, 4], "sep": [5, 2, 1]}, 0.5),
    ("flatten_dense", {"c1": [1, 2, 3, 4], "fc": [0, 9, 8, 2, 3]}, 0.5),
]


@pytest.mark.parametrize("name,zeroed,fraction", HAND_ZEROED, ids=[c[0] for c in HAND_ZEROED])
def test_prune_channels_removes_hand_zeroed_filters_and_keeps_outputs(name, zeroed, fraction):
    model = _zero_filters(channel_models.build(name), zeroed)
    x = channel_models.inputs(model)
    before = _weights_hash(model)

    smaller, record = prune_channels(model, {"target": fraction, "criterion": "l1", "epochs": 0}, None, **QUIET)

    _assert_same_outputs(_outputs(model, x), _outputs(smaller, x))
    for layer_name, idx in zeroed.items():
        if layer_name in record["layers"] and "removed" in record["layers"][layer_name]:
            assert record["layers"][layer_name]["removed"] == sorted(idx)
    assert _weights_hash(model) == before, "the input model is never modified"


def test_depthwise_and_residual_channels_go_together_in_mobilenet_v2_blocks():
    graph = channel_graph.build(channel_models.cached("small_mobilenet_v2"))
    by_producer = {g.key: g for g in graph.groups()}
    # block_2 adds its projection to block_1's: one group, so both lose the same channels
    tied = next(g for key, g in by_producer.items() if "block_1_project" in key)
    assert {p[-1] for p in tied.producers} == {"block_1_project", "block_2_project"}
    # an expansion's channels run through its depthwise layer and BatchNorms into the projection
    expand = graph.nodes[("block_1_expand",)].output
    depthwise = graph.nodes[("block_1_depthwise",)].output
    assert [graph.find(i) for i in expand] == [graph.find(i) for i in depthwise]


class Custom(channel_models.tf_keras().layers.Layer):
    def call(self, x):
        return x * 2.0


def _with(layer_factory, shape=(8, 8, 3)):
    keras = channel_models.tf_keras()
    L = keras.layers
    x = keras.Input(shape)
    y = L.Conv2D(4, 3, padding="same", name="c1")(x)
    y = layer_factory(L)(y)
    y = L.Dense(3, name="out")(L.Flatten()(y))
    return keras.Model(x, y)


REFUSED = [
    ("lambda", lambda L: L.Lambda(lambda t: t * 2, name="doubler"), r"'doubler' \(Lambda\)"),
    ("custom", lambda L: Custom(name="my_custom"), r"'my_custom' \(Custom\)"),
    ("conv_lstm", lambda L: L.ConvLSTM1D(2, 3, name="clstm"), r"'clstm' \(ConvLSTM1D\)"),
]


@pytest.mark.parametrize("case,factory,message", REFUSED, ids=[c[0] for c in REFUSED])
def test_unknown_layer_stops_the_step_naming_it(case, factory, message):
    model = _with(factory)
    with pytest.raises(ChannelPruningError, match=message):
        prune_channels(model, {"target": 0.5, "epochs": 0}, None, **QUIET)


def test_recurrent_model_is_refused_naming_the_layer():
    keras = channel_models.tf_keras()
    model = keras.Sequential([keras.layers.Input((5, 3)), keras.layers.Dense(8, name="embed"),
                              keras.layers.LSTM(4, name="lstm"), keras.layers.Dense(2)])
    with pytest.raises(ChannelPruningError, match=r"'lstm' \(LSTM\)"):
        prune_channels(model, {"target": 0.5, "epochs": 0}, None, **QUIET)


def test_subclassed_model_is_refused():
    keras = channel_models.tf_keras()

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 4), np.float32))
    with pytest.raises(ChannelPruningError, match="subclassed"):
        channel_graph.build(net)


PINNED = [
    ("reshape", lambda L: L.Reshape((32, 8), name="reshape"), "'reshape' (Reshape)"),
    ("permute", lambda L: L.Permute((2, 1, 3), name="perm"), "'perm' (Permute)"),
    ("softmax", lambda L: L.Softmax(name="sm"), "'sm' (Softmax)"),
    ("layernorm", lambda L: L.LayerNormalization(name="ln"), "'ln' (LayerNormalization)"),
]


@pytest.mark.parametrize("case,factory,why", PINNED, ids=[c[0] for c in PINNED])
def test_layers_that_mix_channels_keep_the_channels_around_them(case, factory, why):
    model = channel_models.randomise(_with(factory))
    smaller, record = prune_channels(model, {"target": 0.5, "epochs": 0}, None, **QUIET)
    assert record["layers"]["c1"]["channels_after"] == 4, "c1 feeds a layer that mixes channels"
    assert any(why in reason for p in record["pinned"] for reason in p["why"])
    x = channel_models.inputs(model)
    _assert_same_outputs(_outputs(model, x), _outputs(smaller, x))
