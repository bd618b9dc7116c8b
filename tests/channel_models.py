"""Tiny tf_keras models, one per layer kind the channel-pruning surgery supports, with random weights.

Each builder returns a model whose every weight is drawn from a seeded normal distribution (BatchNorm
variances from a uniform one), so a channel that is not removed exactly would show in the outputs.
"""

import functools

import numpy as np

from edgeopt.converter.keras_io import tf_keras


def randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.name:
            w.assign(rng.uniform(0.5, 2.0, shape).astype(np.float32))
        else:
            w.assign(rng.normal(0.0, 0.5, shape).astype(np.float32))
    return model


def _functional(build, shape, name):
    keras = tf_keras()
    x = keras.Input(shape, name="x")
    return keras.Model(x, build(keras.layers, x), name=name)


def conv2d(L):
    return tf_keras().Sequential([L.Input((8, 8, 3)), L.Conv2D(8, 3, activation="relu", name="c1"),
                                  L.Conv2D(6, 3, padding="same", name="c2"), L.GlobalAveragePooling2D(),
                                  L.Dense(4, name="out")], name="conv2d")


def depthwise(L):
    return tf_keras().Sequential([L.Input((8, 8, 3)), L.Conv2D(8, 1, name="c1"), L.ReLU(),
                                  L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw"),
                                  L.Conv2D(5, 1, name="c2"), L.GlobalMaxPooling2D(), L.Dense(3, name="out")],
                                 name="depthwise")


def separable(L):
    return tf_keras().Sequential([L.Input((8, 8, 3)), L.Conv2D(8, 3, name="c1"), L.ELU(),
                                  L.SeparableConv2D(6, 3, depth_multiplier=2, name="sep"),
                                  L.GlobalAveragePooling2D(), L.Dense(3, name="out")], name="separable")


def conv1d(L):
    return tf_keras().Sequential([L.Input((16, 4)), L.Conv1D(8, 3, activation="relu", name="c1"),
                                  L.MaxPooling1D(), L.Conv1D(6, 3, padding="same", name="c2"),
                                  L.GlobalAveragePooling1D(), L.Dense(3, name="out")], name="conv1d")


def dense(L):
    return tf_keras().Sequential([L.Input((12,)), L.Dense(16, activation="relu", name="d1"), L.Dropout(0.5),
                                  L.Dense(12, activation="tanh", name="d2"), L.Dense(3, name="out")], name="dense")


def batchnorm(L):
    return tf_keras().Sequential([L.Input((8, 8, 3)), L.Conv2D(8, 3, name="c1"), L.BatchNormalization(name="bn"),
                                  L.ReLU(), L.Conv2D(6, 3, name="c2"), L.BatchNormalization(name="bn2"),
                                  L.GlobalAveragePooling2D(), L.Dense(3, name="out")], name="batchnorm")


def add(L):
    def body(L, x):
        y = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
        a = L.Conv2D(6, 3, padding="same", name="a")(y)
        b = L.Conv2D(6, 1, name="b")(y)
        y = L.Add()([a, b])
        y = L.Multiply()([y, L.Conv2D(6, 1, activation="sigmoid", name="gate")(y)])
        return L.Dense(3, name="out")(L.GlobalAveragePooling2D()(y))

    return _functional(body, (8, 8, 3), "add")


def concatenate(L):
    def body(L, x):
        a = L.Conv2D(5, 3, padding="same", name="a")(x)
        b = L.Conv2D(7, 1, name="b")(x)
        y = L.Concatenate()([a, b, x])  # the input's channels stay; a's and b's may go
        y = L.Conv2D(6, 3, name="c")(y)
        return L.Dense(3, name="out")(L.GlobalAveragePooling2D()(y))

    return _functional(body, (8, 8, 3), "concatenate")


def flatten_dense(L):
    return tf_keras().Sequential([L.Input((6, 6, 2)), L.Conv2D(8, 3, activation="relu", name="c1"),
                                  L.MaxPooling2D(), L.Flatten(), L.Dense(10, name="fc"), L.Dense(3, name="out")],
                                 name="flatten_dense")


def nested(L):
    """A Sequential inside a Functional model, and a Functional inside a Sequential inside it."""
    keras = tf_keras()
    inner = keras.Sequential([L.Input((8, 8, 6)), L.Conv2D(8, 3, padding="same", name="ic1"), L.ReLU(),
                              L.Conv2D(4, 1, name="ic2")], name="inner")
    z = keras.Input((8, 8, 4))
    mid = keras.Model(z, L.PReLU(name="prelu")(L.Conv2D(5, 1, name="mc")(z)), name="mid")
    outer_seq = keras.Sequential([L.Input((8, 8, 4)), mid, L.GlobalAveragePooling2D()], name="outer_seq")
    x = keras.Input((8, 8, 3))
    y = outer_seq(inner(L.Conv2D(6, 3, padding="same", name="c1")(x)))
    return keras.Model(x, L.Dense(3, name="out")(y), name="nested")


def shared_layer(L):
    def body(L, x):
        conv = L.Conv2D(6, 3, padding="same", name="shared_conv")
        y = L.Conv2D(4, 3, padding="same", name="c1")(x)
        a, b = conv(y), conv(L.Conv2D(4, 1, name="c2")(x))
        return L.Dense(3, name="out")(L.GlobalAveragePooling2D()(L.Add()([a, b])))

    return _functional(body, (8, 8, 3), "shared")


def sequence_dense(L):
    return tf_keras().Sequential([L.Input((10, 4)), L.Conv1D(8, 3, padding="same", name="c1"),
                                  L.Dense(6, activation="relu", name="per_step"), L.GlobalMaxPooling1D(),
                                  L.Dense(3, name="out")], name="sequence_dense")


def embedding_conv1d(L):
    """A text CNN: token ids -> Embedding -> Conv1D -> pooling -> Dense."""
    return tf_keras().Sequential([L.Input((20,), dtype="int32"), L.Embedding(50, 16, name="embed"),
                                  L.Conv1D(12, 3, activation="relu", name="c1"), L.GlobalMaxPooling1D(),
                                  L.Dense(3, name="out")], name="embedding_conv1d")


def small_mobilenet_v2(L):
    """MobileNetV2's inverted residual blocks (expand, depthwise, project, Add) at 32x32, alpha 0.35."""
    keras = tf_keras()
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
                                          classifier_activation=None)


BUILDERS = {f.__name__: f for f in [conv2d, depthwise, separable, conv1d, dense, batchnorm, add, concatenate,
                                    flatten_dense, nested, shared_layer, sequence_dense, embedding_conv1d,
                                    small_mobilenet_v2]}


def build(name, seed=0):
    model = BUILDERS[name](tf_keras().layers)
    return randomise(model, seed)


@functools.cache
def cached(name):
    """Built once per test session, for tests that read a model and never change it."""
    return build(name)


def inputs(model, n=6, seed=1):
    shape = [n] + list(model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    if model.inputs[0].dtype.is_integer:  # token ids for an Embedding
        return rng.integers(0, 50, shape).astype(np.int32)
    return rng.normal(0.0, 1.0, shape).astype(np.float32)
